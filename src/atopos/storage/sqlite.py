"""SQLite adapter of the storage port: the embedded default, one file, one writer (a thread of
the one process, or the node's writer process under `--workers N`).

Durability: WAL with `synchronous=FULL` behind a group-commit writer, so a returned
`create` survives `kill -9` and power loss. Forgetting: `secure_delete=ON` zeroes freed
pages, and a burn triggers a TRUNCATE checkpoint so no ciphertext lingers in the WAL.
Small bodies (up to one chunk) live inline in their row and are returned by the same
statement that burns them; larger bodies are stored as 1 MiB chunks, streamed from a read
snapshot that was opened before the consuming transaction deleted them.

Each operation implements rows of the lifecycle table in `atopos.protocol.secret_lifecycle`
(cited per method); EXPIRE is the `expires_at > now` test in every read and consume.

The sweep floor (docs/protocol/access.md, "Clock steps"): a sweep that forgets redeemed
ticket ids with `expires_at <= S` stores S in `meta` in the same transaction, never lowering
it; a consume refuses a ticket id whose `expires_at` is at or below it (its record may be
gone), and the node never decides at an earlier time (`sweep_floor`, server/decision_time.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from atopos.clock import Clock, SystemClock
from atopos.errors import Gone
from atopos.storage.chunks import CHUNK_BYTES, fixed_chunks, once, read_head
from atopos.storage.port import (
    GONE_MESSAGE,
    NewSecret,
    Receipts,
    Revealed,
    SecretInfo,
    TicketExpired,
    TicketUsed,
    spent_minute,
)
from atopos.storage.sqlite_batches import Burned, WritersBusy, storage_error
from atopos.storage.sqlite_remote_writer import RemoteWriter
from atopos.storage.sqlite_requests import REQUESTS_SCHEMA, SqliteRequests, sweep_requests
from atopos.storage.sqlite_write_operations import write_operation
from atopos.storage.sqlite_writer import DEFAULT_LOCK_WAIT, GroupCommitWriter, Writes
from atopos.storage.urls import sqlite_path

__all__ = [
    "CHUNK_BYTES",
    "SqliteSecretStore",
    "connect_writer",
    "read_sweep_floor",
    "writers_lock_path",
]

_SCHEMA_VERSION = 5
_log = logging.getLogger("atopos.storage")
T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    id BLOB PRIMARY KEY NOT NULL,
    manage_hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    views_left INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    device_key BLOB,
    body BLOB,
    has_passphrase INTEGER NOT NULL DEFAULT 0,
    access_key BLOB,
    kdf_fields BLOB
);
CREATE INDEX IF NOT EXISTS secrets_by_expiry ON secrets (expires_at);
CREATE TABLE IF NOT EXISTS chunks (
    owner BLOB NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (owner, seq)
);
CREATE TABLE IF NOT EXISTS used_tickets (
    id BLOB PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS used_tickets_by_expiry ON used_tickets (expires_at);
CREATE TABLE IF NOT EXISTS receipts (
    id BLOB PRIMARY KEY NOT NULL,
    manage_hash BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_by_expiry ON receipts (expires_at);
CREATE TABLE IF NOT EXISTS view_receipts (
    owner BLOB NOT NULL,
    minute INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS view_receipts_by_owner ON view_receipts (owner);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""
# The `meta` row of the sweep floor: the latest S of a sweep that forgot the redeemed ticket
# ids with `expires_at <= S` (module docstring).
_SWEEP_FLOOR = "sweep_floor"
_INFO = (
    "SELECT id, manage_hash, kind, size, views_left, created_at, expires_at, device_key,"
    " has_passphrase, access_key, kdf_fields FROM secrets WHERE id = ? AND expires_at > ?"
)


def _open(path: Path, *, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def connect_writer(path: Path) -> sqlite3.Connection:
    """The write connection of the database at `path`: made (0600, in a 0700 directory) or
    migrated to this version's schema."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old_umask = os.umask(0o077)  # the database, its WAL and -shm are for us only
    try:
        conn = _open(path, busy_timeout_ms=5000)
        conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise RuntimeError("the database was written by a newer Atopos")
        # Migrations of an existing file (0 is a new one: the schema below makes it).
        if version == 1:
            conn.execute("ALTER TABLE secrets ADD COLUMN has_passphrase INTEGER NOT NULL DEFAULT 0")
        if 1 <= version <= 2:
            # Secrets stored before the key-knowledge proof keep working without one.
            conn.execute("ALTER TABLE secrets ADD COLUMN access_key BLOB")
            conn.execute("ALTER TABLE secrets ADD COLUMN kdf_fields BLOB")
        # Version 4 adds the `requests` table (secret requests), made by the script.
        conn.executescript(_SCHEMA + REQUESTS_SCHEMA)
        if 1 <= version <= 4:
            # Version 5: secrets stored before receipts get them from now on (earlier
            # views unknown).
            conn.execute(
                "INSERT OR IGNORE INTO receipts (id, manage_hash, expires_at)"
                " SELECT id, manage_hash, expires_at FROM secrets"
            )
        # Files made before the claim lease lack its column (the column has a default
        # and older code never reads it). Likewise the `meta` table of the sweep floor, made
        # by the script above in files from before it: older code neither reads nor needs it.
        columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        if "claimed_until" not in columns:
            conn.execute("ALTER TABLE requests ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0")
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    finally:
        os.umask(old_umask)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return conn


class SqliteSecretStore(SqliteRequests):
    """`SecretStore` on one SQLite file (see module docstring for the guarantees)."""

    def __init__(
        self,
        path: Path,
        clock: Clock | None = None,
        *,
        is_shared_by_processes: bool = False,
        writer_lock_wait: float = DEFAULT_LOCK_WAIT,
        writer_socket: Path | None = None,
    ) -> None:
        """`is_shared_by_processes`: other processes (a node's workers) write the same file.
        The writers then take turns on the flock of a lock file beside it (`writers_lock_path`,
        storage/sqlite_batches.py; a turn waits at most `writer_lock_wait` seconds), and the
        sweep leaves chunks without a secret row alone: they may be another process's upload
        in progress, which this one cannot see. `writer_socket`: this process has no writer of
        its own; the node's writer process listening there runs its writes
        (storage/sqlite_writer_process.py), each waited for at most `writer_lock_wait`."""
        self._path = path
        self._removes_orphan_chunks = not is_shared_by_processes and writer_socket is None
        self._writes: Writes
        if writer_socket is not None:
            # The deadlines it sends are read by the writer process on the machine's monotonic
            # clock: the system's, never the injected one a test may move by hand.
            self._writes = RemoteWriter(writer_socket, SystemClock(), writer_lock_wait)
        else:
            self._writes = GroupCommitWriter(
                functools.partial(connect_writer, path),
                clock,
                lock_path=writers_lock_path(path) if is_shared_by_processes else None,
                lock_wait=writer_lock_wait,
            )
        self._reader: sqlite3.Connection | None = None
        # Secrets whose chunks are being uploaded: the sweeper must not take them for orphans.
        self._uploading: set[bytes] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        clock: Clock | None = None,
        *,
        is_shared_by_processes: bool = False,
        writer_lock_wait: float = DEFAULT_LOCK_WAIT,
        writer_socket: Path | None = None,
    ) -> SqliteSecretStore:
        return cls(
            sqlite_path(url),
            clock,
            is_shared_by_processes=is_shared_by_processes,
            writer_lock_wait=writer_lock_wait,
            writer_socket=writer_socket,
        )

    async def start(self, now: int) -> None:
        self._writes.start()
        self._reader = _open(self._path, busy_timeout_ms=200)
        try:
            await self.sweep(now)
        except WritersBusy:
            # Another worker held the writers' lock all the wait: the periodic sweep will
            # do it; a worker must not fail to start for a sweep.
            _log.warning("sqlite sweep at start skipped: the store is busy")

    async def aclose(self) -> None:
        await self._writes.aclose()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def check(self) -> None:
        try:
            self._reader_conn().execute("SELECT 1 FROM secrets LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    async def used_bytes(self) -> int:
        """The pages in use (the file's pages less its free list), WAL included."""
        conn = self._reader_conn()
        try:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc
        return int((pages - free) * page_size)

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("store not started")
        return self._reader

    async def create(self, secret: NewSecret, body: AsyncIterator[bytes]) -> int:
        # Lifecycle table: GONE --CREATE--> LIVE (STORED).
        head, is_chunked = await read_head(body)
        if is_chunked:
            return await self._create_chunked(secret, fixed_chunks(head, body))
        return await self._write(insert_inline_secret, secret, bytes(head))

    async def _create_chunked(self, secret: NewSecret, chunks: AsyncIterator[bytes]) -> int:
        owner = secret.secret_id
        self._uploading.add(owner)
        size = 0
        try:
            seq = 0
            async for chunk in chunks:
                size += await self._write(insert_chunk, owner, seq, bytes(chunk))
                seq += 1
            return await self._write(publish_chunked_secret, secret, size)
        except BaseException:
            await asyncio.shield(self._write(remove_chunks, owner))
            raise
        finally:
            self._uploading.discard(owner)

    async def info(self, secret_id: bytes, now: int) -> SecretInfo | None:
        # Lifecycle table: READ: LIVE answers INFO; EXPIRED and GONE answer GONE (None).
        # A primary-key lookup on the event loop thread: microseconds, cheaper than a hop
        # to a worker thread; readers never wait for the writer in WAL mode.
        try:
            row = self._reader_conn().execute(_INFO, (secret_id, now)).fetchone()
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc
        if row is None:
            return None
        sid, manage_hash, kind, size, views_left, created_at, expires_at, device_key = row[:8]
        locked, access_key, kdf_fields = row[8:]
        return SecretInfo(
            secret_id=sid,
            manage_token_hash=manage_hash,
            kind=kind,
            size=size,
            views_left=views_left,
            created_at=created_at,
            expires_at=expires_at,
            device_key=device_key,
            has_passphrase=bool(locked),
            access_key=access_key,
            kdf_fields=kdf_fields,
        )

    async def consume(
        self, secret_id: bytes, ticket_id: bytes, ticket_expires_at: int, now: int
    ) -> Revealed:
        # Lifecycle table: CONSUME: ticket id redeemed -> TICKET_USED (any state);
        # LIVE with views_left == 1 -> GONE (BODY), LIVE otherwise -> LIVE (BODY, one view
        # less); EXPIRED and GONE -> GONE answer.
        # One transaction decides everything for a small body (the common case). Unknown
        # secrets go through it too: a replayed ticket is refused as replayed (403) even
        # after the secret is gone, instead of reporting "gone".
        try:
            size, body = await self._write(
                consume_secret, secret_id, ticket_id, ticket_expires_at, now, False
            )
            return Revealed(size, once(body))
        except _NeedsSnapshot:
            pass
        # A chunked body: open the snapshot first, since the consuming transaction may
        # delete the chunks and this reader must still see them.
        snapshot = await asyncio.to_thread(_Snapshot.open, self._path, secret_id)
        try:
            size, _ = await self._write(
                consume_secret, secret_id, ticket_id, ticket_expires_at, now, True
            )
        except BaseException:
            await asyncio.to_thread(snapshot.close)
            raise
        return Revealed(size, snapshot.stream())

    async def receipts(self, secret_id: bytes, now: int) -> Receipts | None:
        try:
            conn = self._reader_conn()
            row = conn.execute(
                "SELECT manage_hash, expires_at FROM receipts WHERE id = ? AND expires_at > ?",
                (secret_id, now),
            ).fetchone()
            if row is None:
                return None
            minutes = conn.execute(
                "SELECT minute FROM view_receipts WHERE owner = ? ORDER BY rowid", (secret_id,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc
        return Receipts(row[0], row[1], tuple(minute for (minute,) in minutes))

    async def delete(self, secret_id: bytes) -> bool:
        # Lifecycle table: DELETE: LIVE and EXPIRED -> GONE (BURNED, True); GONE -> False.
        return await self._write(delete_secret, secret_id)

    async def sweep(self, now: int) -> int:
        # Lifecycle table: SWEEP: EXPIRED -> GONE (BURNED, counted); and redeemed
        # ticket ids past their remember_until are forgotten.
        return await self._write(
            sweep_secrets, now, frozenset(self._uploading), self._removes_orphan_chunks
        )

    async def sweep_floor(self) -> int:
        """The stored floor, as committed by any process's sweep: a read of one row on this
        process's reader connection (WAL readers see the last commit)."""
        try:
            return read_sweep_floor(self._reader_conn())
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    async def _write(self, operation: Callable[..., T | Burned], *args: object) -> T:
        """Run a registered write operation (storage/sqlite_write_operations.py) with `args`,
        durably committed once this returns."""
        result: T = await self._writes.run(operation, *args)
        return result


def writers_lock_path(path: Path) -> Path:
    """The lock file whose flock the writers of the database at `path` take turns on. Not
    the database file's own: closing a descriptor of it would drop every POSIX lock SQLite
    holds on it in this process (a reader's, which keeps its WAL from deletion)."""
    return path.with_name(path.name + "-writers.lock")


def _insert_row(conn: sqlite3.Connection, secret: NewSecret, size: int, body: bytes | None) -> None:
    conn.execute(
        "INSERT INTO receipts (id, manage_hash, expires_at) VALUES (?, ?, ?)",
        (secret.secret_id, secret.manage_token_hash, secret.expires_at),
    )
    conn.execute(
        "INSERT INTO secrets (id, manage_hash, kind, size, views_left, created_at, expires_at,"
        " device_key, body, has_passphrase, access_key, kdf_fields)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            secret.secret_id,
            secret.manage_token_hash,
            secret.kind,
            size,
            secret.views,
            secret.created_at,
            secret.expires_at,
            secret.device_key,
            body,
            int(secret.has_passphrase),
            secret.access_key,
            secret.kdf_fields,
        ),
    )


@write_operation
def insert_inline_secret(conn: sqlite3.Connection, secret: NewSecret, body: bytes) -> int:
    """A secret whose body fits one chunk, in its row."""
    _insert_row(conn, secret, len(body), body)
    return len(body)


@write_operation
def publish_chunked_secret(conn: sqlite3.Connection, secret: NewSecret, size: int) -> int:
    """The row of a secret whose chunks are all stored: from now on it can be read."""
    _insert_row(conn, secret, size, None)
    return size


@write_operation
def insert_chunk(conn: sqlite3.Connection, owner: bytes, seq: int, data: bytes) -> int:
    conn.execute("INSERT INTO chunks (owner, seq, data) VALUES (?, ?, ?)", (owner, seq, data))
    return len(data)


@write_operation
def remove_chunks(conn: sqlite3.Connection, owner: bytes) -> None:
    conn.execute("DELETE FROM chunks WHERE owner = ?", (owner,))


@write_operation
def consume_secret(
    conn: sqlite3.Connection,
    secret_id: bytes,
    ticket_id: bytes,
    ticket_expires_at: int,
    now: int,
    has_snapshot: bool,
) -> tuple[int, bytes | None] | Burned:
    """One view: (size, inline body or None), as `Burned` when it was the last one."""
    floor = read_sweep_floor(conn)
    if ticket_expires_at <= floor:
        # A sweep may have forgotten this id already (its record had the same expires_at):
        # recording it anew would let a replay through. Whoever decided before the floor
        # rose (another worker, or this one just before the sweep) learns it here.
        raise TicketExpired(floor)
    # Never decide at an earlier time than a sweep did (a clock stepped back).
    now = max(now, floor)
    if conn.execute("SELECT 1 FROM used_tickets WHERE id = ?", (ticket_id,)).fetchone():
        raise TicketUsed()
    # The last view (a one-view secret's only one) burns the row in one statement; the
    # ticket id then needs no record, as nothing is left for it to buy (fewer pages to write).
    row = conn.execute(
        "DELETE FROM secrets WHERE id = ? AND expires_at > ? AND views_left = 1 "
        "RETURNING size, body",
        (secret_id, now),
    ).fetchone()
    burned = row is not None
    if not burned:
        row = conn.execute(
            "UPDATE secrets SET views_left = views_left - 1 "
            "WHERE id = ? AND expires_at > ? AND views_left > 1 RETURNING size, body",
            (secret_id, now),
        ).fetchone()
        if row is None:
            raise Gone(GONE_MESSAGE)
        conn.execute(
            "INSERT INTO used_tickets (id, expires_at) VALUES (?, ?)",
            (ticket_id, ticket_expires_at),
        )
    size, body = row
    if body is None and not has_snapshot:
        # Undone with the whole operation (ticket included); the caller retries
        # with a read snapshot open.
        raise _NeedsSnapshot
    # The receipt, in the same transaction as the view (nothing is recorded
    # for a secret without a receipts row).
    conn.execute(
        "INSERT INTO view_receipts (owner, minute) SELECT id, ? FROM receipts WHERE id = ?",
        (spent_minute(now), secret_id),
    )
    if burned:
        if body is None:
            conn.execute("DELETE FROM chunks WHERE owner = ?", (secret_id,))
        return Burned((size, body))
    return size, body


@write_operation
def delete_secret(conn: sqlite3.Connection, secret_id: bytes) -> bool | Burned:
    deleted = conn.execute("DELETE FROM secrets WHERE id = ?", (secret_id,)).rowcount
    conn.execute("DELETE FROM chunks WHERE owner = ?", (secret_id,))
    conn.execute("DELETE FROM receipts WHERE id = ?", (secret_id,))
    conn.execute("DELETE FROM view_receipts WHERE owner = ?", (secret_id,))
    return Burned(True) if deleted else False


@write_operation
def sweep_secrets(
    conn: sqlite3.Connection, now: int, uploading: frozenset[bytes], removes_orphans: bool
) -> int | Burned:
    """Forget what expired at `now`, or at the stored sweep floor when that is later, and
    store that time as the floor; `removes_orphans`: also chunks without a secret row, except
    those of the `uploading` secrets."""
    # S: never below an earlier sweep's (a clock stepped back, a worker that has not read
    # the floor yet), so the floor never goes down.
    now = max(now, read_sweep_floor(conn))
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
        (_SWEEP_FLOOR, now),
    )
    expired = conn.execute(
        "DELETE FROM secrets WHERE expires_at <= ? RETURNING id", (now,)
    ).fetchall()
    conn.executemany("DELETE FROM chunks WHERE owner = ?", expired)
    orphans = []
    if removes_orphans:
        orphans = conn.execute(
            "SELECT DISTINCT owner FROM chunks WHERE owner NOT IN (SELECT id FROM secrets)"
        ).fetchall()
    conn.executemany(
        "DELETE FROM chunks WHERE owner = ?",
        [row for row in orphans if row[0] not in uploading],
    )
    conn.execute("DELETE FROM used_tickets WHERE expires_at <= ?", (now,))
    sweep_requests(conn, now)
    forgotten = conn.execute(
        "DELETE FROM receipts WHERE expires_at <= ? RETURNING id", (now,)
    ).fetchall()
    conn.executemany("DELETE FROM view_receipts WHERE owner = ?", forgotten)
    if expired or orphans:
        return Burned(len(expired))
    return len(expired)


def read_sweep_floor(conn: sqlite3.Connection) -> int:
    """The sweep floor stored in the database on `conn` (0 before the first sweep)."""
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (_SWEEP_FLOOR,)).fetchone()
    return 0 if row is None else int(row[0])


class _NeedsSnapshot(Exception):
    """The body is chunked: it must be read from a snapshot opened before the burn."""


class _Snapshot:
    """A read transaction on its own connection that pins one secret's chunks."""

    def __init__(self, conn: sqlite3.Connection, owner: bytes, count: int) -> None:
        self._conn = conn
        self._owner = owner
        self._count = count
        # Reads and the close run on worker threads; a reader cancelled mid-read (client
        # gone) must not have its connection closed under the read still running.
        self._lock = threading.Lock()
        self._is_closed = False

    @classmethod
    def open(cls, path: Path, owner: bytes) -> _Snapshot:
        conn = _open(path, busy_timeout_ms=5000)
        try:
            conn.execute("BEGIN")
            # The first read fixes the snapshot.
            (count,) = conn.execute(
                "SELECT count(*) FROM chunks WHERE owner = ?", (owner,)
            ).fetchone()
        except sqlite3.Error as exc:
            conn.close()
            raise storage_error(exc) from exc
        return cls(conn, owner, count)

    def _read(self, seq: int) -> bytes:
        with self._lock:
            if self._is_closed:
                raise storage_error(sqlite3.DatabaseError("snapshot closed"))
            row = self._conn.execute(
                "SELECT data FROM chunks WHERE owner = ? AND seq = ?", (self._owner, seq)
            ).fetchone()
        if row is None:
            raise storage_error(sqlite3.DatabaseError("chunk missing"))
        data: bytes = row[0]
        return data

    def close(self) -> None:
        with self._lock:
            if self._is_closed:
                return
            self._is_closed = True
            try:
                self._conn.execute("ROLLBACK")
            finally:
                self._conn.close()

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            for seq in range(self._count):
                yield await asyncio.to_thread(self._read, seq)
        finally:
            # Synchronous on purpose: this also runs when the stream is cancelled or
            # finalized, where awaiting is not reliable; it waits for one read at most.
            self.close()
