"""The storage port's contract, run against every real adapter: SQLite, one Redis, and a
3-master Redis Cluster (real servers on loopback, see tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from atopos.errors import Gone
from atopos.storage.port import Receipts, SecretStore, TicketUsed, spent_minute
from atopos.storage.redis import RedisSecretStore
from atopos.storage.sqlite import CHUNK_BYTES, SqliteSecretStore
from tests.integration.store_scenarios import (
    NOW,
    StoreFactory,
    body,
    run_on,
    secret,
    started,
)


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes a new store (in the test's event loop) on the same backing data each time."""
    if request.param == "sqlite":
        return lambda: SqliteSecretStore(tmp_path / "atopos.db")
    # Looked up lazily, so a run of the SQLite cases alone starts no Redis.
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url = request.getfixturevalue(fixture)
    return lambda: RedisSecretStore.from_url(url)


async def read_all(store: SecretStore, sid: bytes, ticket: bytes) -> bytes:
    revealed = await store.consume(sid, ticket, NOW + 60, NOW)
    data = b"".join([piece async for piece in revealed.chunks])
    assert len(data) == revealed.size
    return data


def test_create_info_consume_burn(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret()
        assert await store.create(record, body(b"abc", b"def")) == 6
        info = await store.info(record.secret_id, NOW)
        assert info is not None
        assert (info.views_left, info.size, info.kind) == (1, 6, "text")
        assert info.manage_token_hash == record.manage_token_hash
        assert await read_all(store, record.secret_id, b"t1" * 8) == b"abcdef"
        assert await store.info(record.secret_id, NOW) is None
        with pytest.raises(Gone):
            await read_all(store, record.secret_id, b"t2" * 8)

    run_on(store_factory, scenario)


def test_the_passphrase_hint_is_kept(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        locked = dataclasses.replace(secret(), has_passphrase=True)
        await store.create(locked, body(b"locked"))
        info = await store.info(locked.secret_id, NOW)
        assert info is not None
        assert info.has_passphrase is True
        plain = secret()
        await store.create(plain, body(b"x" * (3 * 1024 * 1024)))
        info = await store.info(plain.secret_id, NOW)
        assert info is not None
        assert info.has_passphrase is False

    run_on(store_factory, scenario)


def test_the_access_key_and_kdf_fields_are_kept(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        keyed = dataclasses.replace(
            secret(), has_passphrase=True, access_key=b"\x01" * 32, kdf_fields=b"\x02" * 28
        )
        await store.create(keyed, body(b"keyed"))
        info = await store.info(keyed.secret_id, NOW)
        assert info is not None
        assert info.access_key == b"\x01" * 32
        assert info.kdf_fields == b"\x02" * 28
        large = dataclasses.replace(secret(), access_key=b"\x03" * 32)
        await store.create(large, body(b"x" * (3 * 1024 * 1024)))
        info = await store.info(large.secret_id, NOW)
        assert info is not None
        assert (info.access_key, info.kdf_fields) == (b"\x03" * 32, None)
        # A secret stored without one (before the proof existed) still has none.
        old = secret()
        await store.create(old, body(b"old"))
        info = await store.info(old.secret_id, NOW)
        assert info is not None
        assert (info.access_key, info.kdf_fields) == (None, None)

    run_on(store_factory, scenario)


def test_a_bound_secret_keeps_its_device_key(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        device_key = os.urandom(32)
        record = dataclasses.replace(secret(), device_key=device_key)
        await store.create(record, body(b"bound"))
        info = await store.info(record.secret_id, NOW)
        assert info is not None
        assert info.is_bound
        assert info.device_key == device_key
        unbound = secret()
        await store.create(unbound, body(b"free"))
        info = await store.info(unbound.secret_id, NOW)
        assert info is not None
        assert not info.is_bound

    run_on(store_factory, scenario)


def test_views_count_down_exactly(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=3)
        await store.create(record, body(b"x" * 100))
        for n in range(3):
            assert await read_all(store, record.secret_id, bytes([n]) * 16) == b"x" * 100
        with pytest.raises(Gone):
            await read_all(store, record.secret_id, b"\x09" * 16)

    run_on(store_factory, scenario)


def test_ticket_is_single_use_and_failure_consumes_nothing(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        await store.create(record, body(b"y"))
        await read_all(store, record.secret_id, b"T" * 16)
        with pytest.raises(TicketUsed):
            await read_all(store, record.secret_id, b"T" * 16)
        info = await store.info(record.secret_id, NOW)
        assert info is not None
        assert info.views_left == 1

    run_on(store_factory, scenario)


@pytest.mark.parametrize("size", [10, 2 * CHUNK_BYTES + 3], ids=["inline", "chunked"])
def test_the_ticket_that_burned_a_secret_is_not_recorded(
    store_factory: StoreFactory, size: int
) -> None:
    """The last view records no ticket id (nothing is left for it to buy): its replay finds
    the secret gone, like any other ticket. An earlier view's ticket stays recorded."""

    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        await store.create(record, body(os.urandom(size)))
        assert len(await read_all(store, record.secret_id, b"A" * 16)) == size
        assert len(await read_all(store, record.secret_id, b"B" * 16)) == size
        with pytest.raises(TicketUsed):
            await read_all(store, record.secret_id, b"A" * 16)
        with pytest.raises(Gone):
            await read_all(store, record.secret_id, b"B" * 16)
        with pytest.raises(Gone):
            await read_all(store, record.secret_id, b"C" * 16)
        # A refused call recorded nothing: the unused ticket is still "gone", not "used".
        with pytest.raises(Gone):
            await read_all(store, record.secret_id, b"C" * 16)

    run_on(store_factory, scenario)


def test_expired_is_gone_and_swept(
    store_factory: StoreFactory, request: pytest.FixtureRequest
) -> None:
    # SQLite burns the row in the sweep; Redis expires its keys itself (native TTL, checked
    # in test_redis_store.py), so its sweep has nothing to do.
    swept = 1 if request.node.callspec.params["store_factory"] == "sqlite" else 0

    async def scenario(store: SecretStore) -> None:
        record = secret(ttl=60)
        await store.create(record, body(b"z"))
        assert await store.info(record.secret_id, NOW + 60) is None
        with pytest.raises(Gone):
            await store.consume(record.secret_id, b"e" * 16, NOW + 120, NOW + 60)
        assert await store.sweep(NOW + 60) == swept
        assert await store.sweep(NOW + 60) == 0
        assert await store.info(record.secret_id, NOW + 60) is None

    run_on(store_factory, scenario)


def test_delete(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret()
        await store.create(record, body(b"d"))
        assert await store.delete(record.secret_id) is True
        assert await store.delete(record.secret_id) is False
        assert await store.info(record.secret_id, NOW) is None

    run_on(store_factory, scenario)


def test_large_body_streams_in_chunks(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        data = os.urandom(CHUNK_BYTES * 2 + 12345)
        pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        assert await store.create(record, body(*pieces)) == len(data)
        revealed = await store.consume(record.secret_id, b"a" * 16, NOW + 60, NOW)
        chunks = [piece async for piece in revealed.chunks]
        assert len(chunks) == 3
        assert b"".join(chunks) == data
        assert await read_all(store, record.secret_id, b"b" * 16) == data
        assert await store.info(record.secret_id, NOW) is None

    run_on(store_factory, scenario)


def test_a_large_body_never_sits_whole_in_memory(store_factory: StoreFactory) -> None:
    """Upload and reveal stream chunk by chunk: the peak of Python allocations stays a few
    chunks, far below the body's size."""
    size = 24 * CHUNK_BYTES + 77
    piece = os.urandom(64 * 1024)

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece
        yield piece[: size % len(piece)]

    async def scenario(store: SecretStore) -> tuple[int, int]:
        record = secret()
        expected = hashlib.sha256()
        async for part in upload():
            expected.update(part)
        tracemalloc.start()
        try:
            assert await store.create(record, upload()) == size
            revealed = await store.consume(record.secret_id, b"m" * 16, NOW + 60, NOW)
            got, received = hashlib.sha256(), 0
            async for chunk in revealed.chunks:
                got.update(chunk)
                received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got.digest() == expected.digest()
        return received, peak

    received, peak = run_on(store_factory, scenario)
    assert received == size
    assert peak < 8 * CHUNK_BYTES, f"peak {peak / CHUNK_BYTES:.1f} MiB"


def test_snapshot_outlives_concurrent_burn(store_factory: StoreFactory) -> None:
    """A view that started streaming keeps its bytes when the last view burns meanwhile."""

    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        data = os.urandom(CHUNK_BYTES * 2 + 1)
        await store.create(record, body(data))
        first = await store.consume(record.secret_id, b"a" * 16, NOW + 60, NOW)
        got_first = [await anext(first.chunks)]
        assert await read_all(store, record.secret_id, b"b" * 16) == data
        got_first += [piece async for piece in first.chunks]
        assert b"".join(got_first) == data

    run_on(store_factory, scenario)


def test_delete_during_a_stream_lets_the_stream_finish(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        data = os.urandom(CHUNK_BYTES * 2 + 1)
        await store.create(record, body(data))
        streaming = await store.consume(record.secret_id, b"a" * 16, NOW + 60, NOW)
        got = [await anext(streaming.chunks)]
        assert await store.delete(record.secret_id) is True
        assert await store.info(record.secret_id, NOW) is None
        with pytest.raises(Gone):
            await read_all(store, record.secret_id, b"b" * 16)
        got += [piece async for piece in streaming.chunks]
        assert b"".join(got) == data

    run_on(store_factory, scenario)


def test_failed_upload_leaves_nothing(store_factory: StoreFactory) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"q" * (CHUNK_BYTES + 10)
        yield b"q" * CHUNK_BYTES
        raise ValueError("client went away")

    async def scenario(store: SecretStore) -> None:
        record = secret()
        with pytest.raises(ValueError, match="went away"):
            await store.create(record, failing())
        assert await store.info(record.secret_id, NOW) is None

    run_on(store_factory, scenario)


def test_concurrent_consumers_get_exactly_the_views(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=5)
        await store.create(record, body(b"c" * 10))

        async def attempt(n: int) -> bool:
            try:
                await read_all(store, record.secret_id, n.to_bytes(16, "big"))
            except Gone:
                return False
            return True

        results = await asyncio.gather(*(attempt(n) for n in range(200)))
        assert sum(results) == 5

    run_on(store_factory, scenario)


def test_durable_across_reopen(store_factory: StoreFactory) -> None:
    async def scenario() -> None:
        store = await started(store_factory)
        record = secret()
        await store.create(record, body(b"persist"))
        await store.aclose()
        store = await started(store_factory)
        try:
            assert await read_all(store, record.secret_id, b"r" * 16) == b"persist"
        finally:
            await store.aclose()

    asyncio.run(scenario())


# -- reveal receipts ----------------------------------------------------------------------------


def test_receipts_record_the_minute_of_each_view_and_outlive_the_burn(
    store_factory: StoreFactory,
) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=3, ttl=3600)
        await store.create(record, body(b"x" * (2 * CHUNK_BYTES + 5)))
        fresh = await store.receipts(record.secret_id, NOW)
        assert fresh == Receipts(record.manage_token_hash, record.expires_at, ())
        times = [NOW + 7, NOW + 130, NOW + 1799]
        for number, now in enumerate(times):
            revealed = await store.consume(record.secret_id, b"%16d" % number, now + 60, now)
            await revealed.chunks.aclose()
        assert await store.info(record.secret_id, NOW + 1800) is None  # burned
        kept = await store.receipts(record.secret_id, NOW + 1800)
        assert kept is not None
        assert kept.viewed_at == (NOW - NOW % 60, NOW + 120, NOW + 1740)
        assert kept.viewed_at == tuple(spent_minute(now) for now in times)
        assert kept.manage_token_hash == record.manage_token_hash
        # Gone with the secret's lifetime, whatever the views did.
        assert await store.receipts(record.secret_id, record.expires_at) is None
        if isinstance(store, SqliteSecretStore):  # Redis forgets them by the keys' TTL
            await store.sweep(record.expires_at)
            assert await store.receipts(record.secret_id, NOW) is None

    run_on(store_factory, scenario)


def test_a_refused_consume_records_no_receipt(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        await store.create(record, body(b"small"))
        assert await read_all(store, record.secret_id, b"t1" * 8) == b"small"
        with pytest.raises(TicketUsed):
            await read_all(store, record.secret_id, b"t1" * 8)
        receipts = await store.receipts(record.secret_id, NOW)
        assert receipts is not None
        assert receipts.viewed_at == (spent_minute(NOW),)

    run_on(store_factory, scenario)


def test_delete_burns_the_receipts_too(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        record = secret(views=2)
        await store.create(record, body(b"small"))
        await read_all(store, record.secret_id, b"t1" * 8)
        assert await store.delete(record.secret_id) is True
        assert await store.receipts(record.secret_id, NOW) is None
        assert await store.receipts(os.urandom(16), NOW) is None

    run_on(store_factory, scenario)
