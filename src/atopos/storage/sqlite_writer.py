"""Group commit for SQLite: one writer thread, many callers, one fsync per batch.

Every write is a small function run on the writer's connection; one failing operation never
spoils its neighbours. A batch first runs without savepoints (two statements fewer per
operation); if an operation of it raises, the whole transaction is rolled back and the batch
runs again with each operation inside its own SAVEPOINT, so the failure undoes only its own
writes. Operations are therefore functions of the connection alone, safe to run twice.
The thread takes all operations that queued up while the previous batch was committing,
commits them in one transaction (`synchronous=FULL`: the WAL is fsynced before COMMIT
returns) and only then resolves the callers' futures. A caller that got a result therefore
holds a durable answer, and many concurrent callers share the cost of one fsync.

When several processes write the same file (`atopos serve --workers N`), each has its own
writer, and `lock_path` names the file (created, empty, beside the database; never the
database itself) whose exclusive flock a writer holds from BEGIN to COMMIT (and over a
checkpoint): the writers then take turns, woken by the kernel the moment the lock is free,
instead of SQLite's busy handler polling with sleeps of up to 100 ms. The kernel releases
the flock when its holder dies, kill -9 included. A batch waits for its turn at most
`lock_wait` seconds from the submission of its oldest operation (storage/writers_lock.py), so
a write queued behind batches that waited does not wait again in full; past that nothing of
it was begun, and every caller of the batch gets Unavailable (503 with Retry-After), none a
result. A checkpoint whose wait runs out is tried again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from atopos.clock import Clock, SystemClock
from atopos.errors import StorageFull, Unavailable
from atopos.storage.port import FULL_MESSAGE, UNAVAILABLE_MESSAGE
from atopos.storage.writers_lock import WritersLock

__all__ = [
    "BUSY_MESSAGE",
    "DEFAULT_LOCK_WAIT",
    "GroupCommitWriter",
    "WritersBusy",
    "storage_error",
]

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]
_MAX_BATCH = 512
# A burn asks for a TRUNCATE checkpoint so the ciphertext leaves the WAL file. It runs at
# once after a quiet spell, and under load at most this often (seconds): each one costs an
# fsync of the database file, which would otherwise follow nearly every burn.
_CHECKPOINT_EVERY = 0.5
_STOP = object()
_log = logging.getLogger("atopos.storage")
# How long a batch waits for the writers' lock by default (ATOPOS_WRITER_LOCK_WAIT).
DEFAULT_LOCK_WAIT = 5.0
BUSY_MESSAGE = "The storage is busy; nothing was stored or spent. Try again in a few seconds."


class WritersBusy(Unavailable):
    """Another process held the writers' lock all the wait: nothing was begun (503)."""


class _NoTurn(Exception):
    """The writers' lock was not free within the wait."""


def storage_error(exc: sqlite3.Error) -> Unavailable:
    """Translate an SQLite failure into the error the API reports (507 or 503)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StorageFull(FULL_MESSAGE)
    return Unavailable(UNAVAILABLE_MESSAGE)


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        clock: Clock | None = None,
        *,
        lock_path: Path | None = None,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        self._connect = connect
        self._lock_path = lock_path
        self._lock_wait = lock_wait
        self._lock: WritersLock | None = None
        self._clock = clock or SystemClock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._checkpoint_wanted = False
        self._last_checkpoint = 0.0
        self._thread = threading.Thread(target=self._run, name="atopos-sqlite-writer", daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._is_stopped = False

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def request_checkpoint(self) -> None:
        """Called from inside an operation that burned ciphertext."""
        self._checkpoint_wanted = True

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._is_stopped:
            future.set_exception(Unavailable(UNAVAILABLE_MESSAGE))
            return future
        # When its wait for the writers' lock runs out, counted from now.
        deadline = self._clock.monotonic() + self._lock_wait
        self._queue.put((operation, future, loop, deadline))
        if self._is_stopped:  # the thread ended between the check above and the put
            self._fail_queued()
        return future

    def _run(self) -> None:
        try:
            conn = self._connect()
            if self._lock_path is not None:
                self._lock = WritersLock(self._lock_path, self._lock_wait)
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                timeout = None
                if self._checkpoint_wanted:
                    due = self._last_checkpoint + _CHECKPOINT_EVERY - self._clock.monotonic()
                    timeout = max(0.001, due)
                try:
                    first = self._queue.get(timeout=timeout)
                except queue.Empty:
                    self._checkpoint(conn)
                    continue
                if first is _STOP:
                    break
                batch = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                if not self._commit(conn, batch):
                    conn = self._reopened(conn)
                if (
                    self._checkpoint_wanted
                    and self._clock.monotonic() - self._last_checkpoint >= _CHECKPOINT_EVERY
                ):
                    self._checkpoint(conn)
                if stop:
                    break
            if self._checkpoint_wanted:
                self._checkpoint(conn)
        finally:
            # However the thread ends, no caller may wait for it: refuse what is queued and
            # everything submitted from now on.
            self._is_stopped = True
            self._fail_queued()
            with contextlib.suppress(Exception):
                conn.close()
            if self._lock is not None:
                self._lock.close()

    def _fail_queued(self) -> None:
        items = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                items.append(item)
        _answer(items, _failed(items, Unavailable(UNAVAILABLE_MESSAGE)))

    def _reopened(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """A fresh connection after one that may be unusable; the old one if none can be
        made now (the next batch then fails with Unavailable and tries again)."""
        try:
            fresh = self._connect()
        except Exception as exc:
            _log.error("sqlite reconnect failed", extra={"error": type(exc).__name__})
            return conn
        with contextlib.suppress(Exception):
            conn.close()
        return fresh

    @contextlib.contextmanager
    def _turn(self, deadline: float | None = None) -> Iterator[None]:
        """This process's turn to write, when other processes write the same file; _NoTurn
        when the lock was not free by `deadline` (monotonic; None: within the whole wait)."""
        if self._lock is None:
            yield
            return
        wait = None if deadline is None else deadline - self._clock.monotonic()
        if not self._lock.acquire(wait):
            raise _NoTurn
        try:
            yield
        finally:
            self._lock.release()

    def _commit(self, conn: sqlite3.Connection, batch: list[Any]) -> bool:
        """Commit `batch` and answer its callers; False when the connection may be unusable
        (a failure outside a transaction's own: a ROLLBACK that failed, the writers' lock)."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        settled, is_healthy = False, True
        try:
            # The batch is in submission order: its first operation has waited longest.
            with self._turn(batch[0][3]):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    if len(batch) == 1:
                        # A lone operation needs no savepoint: the transaction is its own.
                        operation, future, _loop, _deadline = batch[0]
                        outcomes.append((future, *_apply(conn, operation, isolate=False)))
                    elif not _apply_all(conn, batch, outcomes):
                        # One of them raised and everything was rolled back: again, each in
                        # its own savepoint (see the module docstring).
                        conn.execute("BEGIN IMMEDIATE")
                        for operation, future, _loop, _deadline in batch:
                            outcomes.append((future, *_apply(conn, operation, isolate=True)))
                    if conn.in_transaction:
                        conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    # The transaction as a whole failed (disk full at commit, I/O error):
                    # nothing of the batch is durable, so every caller hears so.
                    _log.error("sqlite commit failed", extra={"error": type(exc).__name__})
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    outcomes = _failed(batch, storage_error(exc))
                settled = True
        except _NoTurn:
            # Another process held the writers' lock all the wait: nothing was begun, so
            # nothing of the batch is written, and every caller hears so.
            _log.warning("sqlite writers' lock wait ran out", extra={"batch": len(batch)})
            outcomes = _failed(batch, WritersBusy(BUSY_MESSAGE))
        except Exception as exc:
            # Once the batch was settled (committed, or rolled back by SQLite's own failure
            # path) its outcomes stand, even if giving back the lock failed; before that
            # nothing of it was committed. Either way no caller is left waiting.
            _log.error("sqlite writer failed", extra={"error": type(exc).__name__})
            is_healthy = False
            if not settled:
                outcomes = _failed(batch, Unavailable(UNAVAILABLE_MESSAGE))
        _answer(batch, outcomes)
        return is_healthy

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        # A TRUNCATE checkpoint waits (busy handler) for readers of older snapshots, such as
        # a slow download of a large secret; the writer must never stall behind one, so it
        # does not wait at all and tries again a moment later.
        try:
            (busy_timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                with self._turn():
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
        except (sqlite3.Error, OSError, _NoTurn):
            busy = 1
        self._last_checkpoint = self._clock.monotonic()
        # A reader still inside an old snapshot blocks the truncate; try again later.
        self._checkpoint_wanted = bool(busy)


def _apply_all(
    conn: sqlite3.Connection,
    batch: list[Any],
    outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
) -> bool:
    """Run a batch of several operations without savepoints, adding their outcomes: True when
    every one returned; False, with the transaction rolled back and `outcomes` left as it
    was, when one raised."""
    results = []
    try:
        for operation, future, _loop, _deadline in batch:
            results.append((future, operation(conn), None))
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return False
    outcomes.extend(results)
    return True


def _apply(
    conn: sqlite3.Connection, operation: Operation, *, isolate: bool
) -> tuple[Any, BaseException | None]:
    """Run one operation: (its result, None), or (None, its error) with its writes undone."""
    if isolate:
        conn.execute("SAVEPOINT op")
    try:
        result = operation(conn)
    except Exception as exc:
        if isolate:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        elif conn.in_transaction:
            conn.execute("ROLLBACK")
        return None, storage_error(exc) if isinstance(exc, sqlite3.Error) else exc
    if isolate:
        conn.execute("RELEASE op")
    return result, None


def _failed(
    items: list[Any], error: BaseException
) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
    """The same error for every queued item (operation, future, loop, deadline)."""
    return [(future, None, error) for _op, future, *_ in items]


def _answer(
    items: list[Any], outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
) -> None:
    """Resolve each item's future with its outcome, on its own event loop, one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for (_op, _future, loop, _deadline), outcome in zip(items, outcomes, strict=True):
        by_loop.setdefault(loop, []).append(outcome)
    for loop, resolved in by_loop.items():
        # RuntimeError: the loop closed meanwhile; nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, resolved)


def _resolve_all(resolved: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in resolved:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
