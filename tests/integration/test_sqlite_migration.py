"""An SQLite file written by an older Atopos opens, is migrated to the current schema, and its
secrets keep working (those stored before the key-knowledge proof have no access key; those
stored before reveal receipts get receipts from the migration on)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from atopos.storage.port import TicketUsed
from atopos.storage.sqlite import SqliteSecretStore
from tests.integration.store_scenarios import NOW, body, secret

# The `secrets` table as schema versions 1 and 2 made it (the other tables did not change).
_OLD_SECRETS = """
CREATE TABLE secrets (
    id BLOB PRIMARY KEY NOT NULL,
    manage_hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    views_left INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    device_key BLOB,
    body BLOB{extra}
);
"""


def _old_database(path: Path, version: int) -> bytes:
    extra = ",\n    has_passphrase INTEGER NOT NULL DEFAULT 0" if version >= 2 else ""
    if version >= 3:
        extra += ",\n    access_key BLOB,\n    kdf_fields BLOB"
    old_id = b"\x05" * 16
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SECRETS.format(extra=extra))
    conn.execute(
        "INSERT INTO secrets (id, manage_hash, kind, size, views_left, created_at, expires_at,"
        " device_key, body) VALUES (?, ?, 'text', 3, 2, ?, ?, NULL, ?)",
        (old_id, b"\x00" * 32, NOW, NOW + 600, b"old"),
    )
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()
    return old_id


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_is_migrated_and_its_secrets_still_open(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "atopos.db"
    old_id = _old_database(path, version)

    async def scenario() -> None:
        store = SqliteSecretStore(path)
        await store.start(NOW)
        try:
            info = await store.info(old_id, NOW)
            assert info is not None
            assert (info.views_left, info.access_key, info.kdf_fields) == (2, None, None)
            keyed = dataclasses.replace(secret(), access_key=b"\x01" * 32, kdf_fields=b"\x02" * 28)
            await store.create(keyed, body(b"new"))
            info = await store.info(keyed.secret_id, NOW)
            assert info is not None
            assert (info.access_key, info.kdf_fields) == (b"\x01" * 32, b"\x02" * 28)
            revealed = await store.consume(old_id, b"t" * 16, NOW + 60, NOW)
            assert b"".join([piece async for piece in revealed.chunks]) == b"old"
        finally:
            await store.aclose()

    asyncio.run(scenario())
    conn = sqlite3.connect(path)
    try:
        # 5 since reveal receipts (4 added secret requests, 3 the key-knowledge proof).
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        conn.close()


def test_a_version_3_database_gains_the_requests_table(tmp_path: Path) -> None:
    """Schema version 4 adds secret requests; a version-3 file keeps its secrets and can
    hold requests after the upgrade."""
    from atopos.storage.request_port import NewRequest

    path = tmp_path / "atopos.db"
    kept = secret()

    async def write_version_3() -> None:
        store = SqliteSecretStore(path)
        await store.start(NOW)
        try:
            await store.create(kept, body(b"kept"))
        finally:
            await store.aclose()

    asyncio.run(write_version_3())
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE requests")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    request = NewRequest(
        request_id=b"\x07" * 16,
        token_hash=b"\x01" * 32,
        fill_token_hash=b"\x02" * 32,
        device_key=b"\x03" * 32,
        access_key=b"\x04" * 32,
        created_at=NOW,
        expires_at=NOW + 600,
        secret_lifetime=600,
    )

    async def upgrade() -> None:
        store = SqliteSecretStore(path)
        await store.start(NOW)
        try:
            assert await store.info(kept.secret_id, NOW) is not None
            await store.create_request(request)
            info = await store.request_info(request.request_id, NOW)
            assert info is not None
            assert info.access_key == b"\x04" * 32
        finally:
            await store.aclose()

    asyncio.run(upgrade())


@pytest.mark.parametrize("version", [3, 4])
def test_an_older_database_gets_receipts_for_its_secrets(tmp_path: Path, version: int) -> None:
    """Version 5 adds receipts; files of version 3 and 4 (secret requests) had none."""
    path = tmp_path / "atopos.db"
    old_id = _old_database(path, version)

    async def scenario() -> None:
        store = SqliteSecretStore(path)
        await store.start(NOW)
        try:
            receipts = await store.receipts(old_id, NOW)
            assert receipts is not None
            assert (receipts.manage_token_hash, receipts.expires_at) == (b"\x00" * 32, NOW + 600)
            assert receipts.viewed_at == ()
            revealed = await store.consume(old_id, b"t" * 16, NOW + 60, NOW + 61)
            assert b"".join([piece async for piece in revealed.chunks]) == b"old"
            receipts = await store.receipts(old_id, NOW)
            assert receipts is not None
            assert receipts.viewed_at == (NOW + 60 - NOW % 60,)
        finally:
            await store.aclose()

    asyncio.run(scenario())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        conn.close()


def test_a_version_4_requests_table_gains_the_claim_lease(tmp_path: Path) -> None:
    """A version-4 file made before the claim lease has no `claimed_until` column: it gains
    one, its open request is kept and can be claimed, and the claim then holds its lease."""
    from atopos.storage.request_port import CLAIM_LEASE_SECONDS, NewRequest, RequestTaken

    path = tmp_path / "atopos.db"
    request = NewRequest(
        request_id=b"\x07" * 16,
        token_hash=b"\x01" * 32,
        fill_token_hash=b"\x02" * 32,
        device_key=b"\x03" * 32,
        access_key=b"\x04" * 32,
        created_at=NOW,
        expires_at=NOW + 4 * CLAIM_LEASE_SECONDS,
        secret_lifetime=600,
    )

    async def write(store_path: Path) -> None:
        store = SqliteSecretStore(store_path)
        await store.start(NOW)
        try:
            await store.create_request(request)
        finally:
            await store.aclose()

    asyncio.run(write(path))
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE requests DROP COLUMN claimed_until")
    conn.commit()
    conn.close()

    async def upgrade() -> None:
        store = SqliteSecretStore(path)
        await store.start(NOW)
        try:
            claimed = await store.claim_request(request.request_id, b"\x05" * 16, NOW)
            assert claimed.claimed_until == NOW + CLAIM_LEASE_SECONDS
            with pytest.raises(RequestTaken):
                await store.claim_request(request.request_id, b"\x06" * 16, NOW + 1)
            later = NOW + CLAIM_LEASE_SECONDS
            assert (await store.claim_request(request.request_id, b"\x06" * 16, later)).secret_id
        finally:
            await store.aclose()

    asyncio.run(upgrade())
    conn = sqlite3.connect(path)
    try:
        assert (
            conn.execute("PRAGMA user_version").fetchone()[0] == 5
        )  # the current version; the lease column needs no bump
    finally:
        conn.close()


def test_a_file_from_before_the_sweep_floor_gains_it_and_keeps_its_secrets(tmp_path: Path) -> None:
    """The `meta` table of the sweep floor (docs/protocol/access.md, "Clock steps") is made
    at open in a file from before it, like the claim lease's column: older code neither
    reads nor needs it. The file's secrets and redeemed ticket ids are kept, and the first
    sweep stores its floor."""
    path = tmp_path / "atopos.db"
    kept = secret(views=2)

    async def write_before() -> None:
        store = SqliteSecretStore(path)
        await store.start(NOW)
        try:
            await store.create(kept, body(b"kept"))
            revealed = await store.consume(kept.secret_id, b"t" * 16, NOW + 60, NOW)
            await revealed.chunks.aclose()
        finally:
            await store.aclose()

    asyncio.run(write_before())
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE meta")
    conn.commit()
    conn.close()

    async def upgrade() -> tuple[int, int]:
        store = SqliteSecretStore(path)
        await store.start(NOW + 5)
        try:
            with pytest.raises(TicketUsed):
                await store.consume(kept.secret_id, b"t" * 16, NOW + 60, NOW + 5)
            info = await store.info(kept.secret_id, NOW + 5)
            assert info is not None
            return info.views_left, await store.sweep_floor()
        finally:
            await store.aclose()

    assert asyncio.run(upgrade()) == (1, NOW + 5)
