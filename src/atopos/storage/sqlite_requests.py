"""The secret requests of the SQLite adapter (`storage/request_port.py`): one table in the
same file as the secrets, written through the same group-commit writer (its write
operations are registered by name: storage/sqlite_write_operations.py).

A claim is one `UPDATE ... WHERE secret_id IS NULL OR <its lease lapsed unfilled>`, so of
concurrent claims exactly one changes the row; the others see it taken.

Each operation implements the rows of its event in `protocol/request_lifecycle.py`
(EXPIRE is the `expires_at > now` test of every read and claim).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from atopos.storage.request_port import (
    CLAIM_LEASE_SECONDS,
    NewRequest,
    RequestInfo,
    RequestTaken,
)
from atopos.storage.sqlite_batches import Burned, storage_error
from atopos.storage.sqlite_write_operations import write_operation

__all__ = ["REQUESTS_SCHEMA", "SqliteRequests", "sweep_requests"]

T = TypeVar("T")

REQUESTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id BLOB PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL,
    fill_hash BLOB NOT NULL,
    device_key BLOB NOT NULL,
    access_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    secret_lifetime INTEGER NOT NULL,
    secret_id BLOB,
    is_filled INTEGER NOT NULL DEFAULT 0,
    claimed_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_by_expiry ON requests (expires_at);
"""
_INSERT = (
    "INSERT INTO requests (id, token_hash, fill_hash, device_key, access_key, created_at,"
    " expires_at, secret_lifetime, secret_id, is_filled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)"
)
_SELECT = (
    "SELECT id, token_hash, fill_hash, device_key, access_key, created_at, expires_at,"
    " secret_lifetime, secret_id, is_filled, claimed_until FROM requests"
    " WHERE id = ? AND expires_at > ?"
)
_CLAIM = (
    "UPDATE requests SET secret_id = :secret, claimed_until = :now + :lease"
    " WHERE id = :id AND expires_at > :now"
    " AND (secret_id IS NULL OR (is_filled = 0 AND claimed_until <= :now))"
    " RETURNING id, token_hash, fill_hash, device_key, access_key, created_at, expires_at,"
    " secret_lifetime, secret_id, is_filled, claimed_until"
)


class SqliteRequests:
    """`RequestStore` for `SqliteSecretStore`, which provides `_write` and `_reader_conn`."""

    if TYPE_CHECKING:

        async def _write(self, operation: Callable[..., T | Burned], *args: object) -> T: ...

        def _reader_conn(self) -> sqlite3.Connection: ...

    async def create_request(self, request: NewRequest) -> None:
        await self._write(insert_request, request)

    async def request_info(self, request_id: bytes, now: int) -> RequestInfo | None:
        try:
            row = self._reader_conn().execute(_SELECT, (request_id, now)).fetchone()
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc
        return None if row is None else _info(row)

    async def claim_request(self, request_id: bytes, secret_id: bytes, now: int) -> RequestInfo:
        return await self._write(claim_request, request_id, secret_id, now)

    async def release_request(self, request_id: bytes, secret_id: bytes) -> None:
        await self._write(release_request, request_id, secret_id)

    async def cancel_request(self, request_id: bytes, now: int) -> bool:
        return await self._write(cancel_request, request_id, now)

    async def complete_request(
        self, request_id: bytes, secret_id: bytes, expires_at: int, now: int
    ) -> bool:
        return await self._write(complete_request, request_id, secret_id, expires_at, now)


@write_operation
def insert_request(conn: sqlite3.Connection, request: NewRequest) -> None:
    conn.execute(
        _INSERT,
        (
            request.request_id,
            request.token_hash,
            request.fill_token_hash,
            request.device_key,
            request.access_key,
            request.created_at,
            request.expires_at,
            request.secret_lifetime,
        ),
    )


@write_operation
def claim_request(
    conn: sqlite3.Connection, request_id: bytes, secret_id: bytes, now: int
) -> RequestInfo:
    row = conn.execute(
        _CLAIM,
        {"secret": secret_id, "now": now, "lease": CLAIM_LEASE_SECONDS, "id": request_id},
    ).fetchone()
    if row is None:
        raise RequestTaken()
    return _info(row)


@write_operation
def release_request(conn: sqlite3.Connection, request_id: bytes, secret_id: bytes) -> None:
    conn.execute(
        "UPDATE requests SET secret_id = NULL WHERE id = ? AND secret_id = ? AND is_filled = 0",
        (request_id, secret_id),
    )


@write_operation
def cancel_request(conn: sqlite3.Connection, request_id: bytes, now: int) -> bool:
    # The claim's own condition, so a claim and a cancel exclude each other.
    cursor = conn.execute(
        "DELETE FROM requests WHERE id = :id AND expires_at > :now"
        " AND (secret_id IS NULL OR (is_filled = 0 AND claimed_until <= :now))",
        {"id": request_id, "now": now},
    )
    return cursor.rowcount == 1


@write_operation
def complete_request(
    conn: sqlite3.Connection, request_id: bytes, secret_id: bytes, expires_at: int, now: int
) -> bool:
    cursor = conn.execute(
        "UPDATE requests SET is_filled = 1, expires_at = max(expires_at, ?)"
        " WHERE id = ? AND secret_id = ? AND expires_at > ?",
        (expires_at, request_id, secret_id, now),
    )
    return cursor.rowcount == 1


def sweep_requests(conn: sqlite3.Connection, now: int) -> None:
    """Forget expired requests (run inside the store's sweep)."""
    conn.execute("DELETE FROM requests WHERE expires_at <= ?", (now,))


def _info(row: Any) -> RequestInfo:
    (rid, token_hash, fill_hash, device_key, access_key, created, expires, lifetime) = row[:8]
    secret_id, is_filled, claimed_until = row[8:]
    return RequestInfo(
        request_id=rid,
        token_hash=token_hash,
        fill_token_hash=fill_hash,
        device_key=device_key,
        access_key=access_key,
        created_at=created,
        expires_at=expires,
        secret_lifetime=lifetime,
        secret_id=secret_id,
        is_filled=bool(is_filled),
        claimed_until=claimed_until,
    )
