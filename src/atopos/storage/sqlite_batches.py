"""One group-commit batch on SQLite's write connection, shared by the two writers: the thread of
one process (storage/sqlite_writer.py) and the node's writer process (`atopos serve --workers
N`, storage/sqlite_writer_process.py). They differ only in how operations reach them and how
the outcomes go back.

A batch first runs without savepoints (two statements fewer per operation); if an operation
of it raises, the whole transaction is rolled back and the batch runs again with each
operation inside its own SAVEPOINT, so the failure undoes only its own writes. An operation,
`op(conn, *args)` bound to its arguments (storage/sqlite_write_operations.py), must therefore
depend on nothing but the connection and those arguments: it may run twice. One transaction
per batch (`synchronous=FULL`: the WAL is fsynced before COMMIT returns), and the outcomes are
known only after COMMIT returned, so whoever hears of one holds a durable answer.

With `lock_path`, the batch holds the exclusive flock of that file (created, empty, beside the
database; never the database itself) from BEGIN to COMMIT (and over a checkpoint), so any
other writer of the file takes turns with this one (storage/writers_lock.py). A batch waits
for its turn until the deadline of its first operation (the earliest: the thread's batch is
in arrival order, the writer process sorts its own by deadline); past that nothing of it was
begun, and every operation of it gets WritersBusy (503 with Retry-After). A checkpoint whose
wait runs out is tried again later.

An operation that burned ciphertext returns `Burned(result)`: the committer then runs a
TRUNCATE checkpoint soon, so the ciphertext leaves the WAL file; its caller gets `result`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atopos.clock import Clock
from atopos.errors import StorageFull, Unavailable
from atopos.storage.port import FULL_MESSAGE, UNAVAILABLE_MESSAGE
from atopos.storage.writers_lock import WritersLock

__all__ = [
    "BUSY_MESSAGE",
    "MAX_BATCH",
    "BatchCommitter",
    "Burned",
    "Operation",
    "Outcome",
    "WritersBusy",
    "storage_error",
]

Operation = Callable[[sqlite3.Connection], Any]
# (result, None), or (None, the error its caller gets).
Outcome = tuple[Any, BaseException | None]
# A burn asks for a TRUNCATE checkpoint so the ciphertext leaves the WAL file. It runs at
# once after a quiet spell, and under load at most this often (seconds): each one costs an
# fsync of the database file, which would otherwise follow nearly every burn.
CHECKPOINT_EVERY = 0.5
# Operations in one transaction at most; what is left runs in the next one at once.
MAX_BATCH = 512
_log = logging.getLogger("atopos.storage")
BUSY_MESSAGE = "The storage is busy; nothing was stored or spent. Try again in a few seconds."


class WritersBusy(Unavailable):
    """Another process held the writers' lock all the wait: nothing was begun (503)."""


@dataclass(frozen=True, slots=True)
class Burned:
    """What an operation that burned ciphertext returns: its caller's result, and a request
    for a checkpoint."""

    result: Any


class _NoTurn(Exception):
    """The writers' lock was not free within the wait."""


def storage_error(exc: sqlite3.Error) -> Unavailable:
    """Translate an SQLite failure into the error the API reports (507 or 503)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StorageFull(FULL_MESSAGE)
    return Unavailable(UNAVAILABLE_MESSAGE)


class BatchCommitter:
    """The write connection, the writers' lock and the checkpoint policy of one writer."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        clock: Clock,
        *,
        lock_path: Path | None,
        lock_wait: float,
    ) -> None:
        self._connect = connect
        self._clock = clock
        self._lock_path = lock_path
        self._lock_wait = lock_wait
        self._lock: WritersLock | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpoint_wanted = False
        self._last_checkpoint = 0.0
        self._is_broken = False  # the last batch may have left the connection unusable

    def open(self) -> None:
        """Connect (and migrate) and open the lock file; raises what the connection raised."""
        self._conn = self._connect()
        if self._lock_path is not None:
            self._lock = WritersLock(self._lock_path, self._lock_wait)

    def close(self) -> None:
        """A last checkpoint if one is wanted, then close the connection and the lock."""
        if self._conn is not None and self._checkpoint_wanted:
            self.checkpoint()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def checkpoint_wait(self) -> float | None:
        """Seconds until a wanted checkpoint is due (at least a millisecond); None: none is."""
        if not self._checkpoint_wanted:
            return None
        due = self._last_checkpoint + CHECKPOINT_EVERY - self._clock.monotonic()
        return max(0.001, due)

    def checkpoint_if_due(self) -> None:
        if (
            self._checkpoint_wanted
            and self._clock.monotonic() - self._last_checkpoint >= CHECKPOINT_EVERY
        ):
            self.checkpoint()

    def commit(self, batch: list[tuple[Operation, float]]) -> list[Outcome]:
        """Run `batch` ((operation, deadline of its lock wait), in arrival order) in one
        transaction: one outcome per operation, in order. After a failure that may have left
        the connection unusable, the writer calls `reopen_if_broken` once it has answered (and
        this does, if it did not)."""
        self.reopen_if_broken()
        conn = self._conn
        if conn is None:
            raise RuntimeError("the batch committer is not open")
        outcomes: list[Outcome] = []
        settled, is_healthy = False, True
        try:
            # The batch is in arrival order: its first operation has waited longest.
            with self._turn(batch[0][1]):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    if len(batch) == 1:
                        # A lone operation needs no savepoint: the transaction is its own.
                        outcomes.append(self._apply(conn, batch[0][0], isolate=False))
                    elif not self._apply_all(conn, batch, outcomes):
                        # One of them raised and everything was rolled back: again, each in
                        # its own savepoint (see the module docstring).
                        conn.execute("BEGIN IMMEDIATE")
                        for operation, _deadline in batch:
                            outcomes.append(self._apply(conn, operation, isolate=True))
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
        self._is_broken = not is_healthy
        return outcomes

    def reopen_if_broken(self) -> None:
        """A fresh connection if the last batch may have left this one unusable. Called once
        that batch's callers were answered: a reconnect migrates, and its busy handler may wait
        for another writer of the file, which they need not wait for."""
        if self._is_broken:
            self._is_broken = False
            self._reopen()

    def checkpoint(self) -> None:
        # A TRUNCATE checkpoint waits (busy handler) for readers of older snapshots, such as
        # a slow download of a large secret; the writer must never stall behind one, so it
        # does not wait at all and tries again a moment later.
        conn = self._conn
        if conn is None:
            return
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

    def _reopen(self) -> None:
        """A fresh connection after one that may be unusable; the old one stays if none can
        be made now (the next batch then fails with Unavailable and tries again)."""
        try:
            fresh = self._connect()
        except Exception as exc:
            _log.error("sqlite reconnect failed", extra={"error": type(exc).__name__})
            return
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = fresh

    @contextlib.contextmanager
    def _turn(self, deadline: float | None = None) -> Iterator[None]:
        """This writer's turn, when other processes write the same file; _NoTurn when the
        lock was not free by `deadline` (monotonic; None: within the whole wait)."""
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

    def _apply_all(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Operation, float]],
        outcomes: list[Outcome],
    ) -> bool:
        """Run several operations without savepoints, adding their outcomes: True when every
        one returned; False, with the transaction rolled back and `outcomes` left as it was,
        when one raised."""
        results: list[Outcome] = []
        try:
            for operation, _deadline in batch:
                results.append((self._result_of(operation(conn)), None))
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False
        outcomes.extend(results)
        return True

    def _apply(self, conn: sqlite3.Connection, operation: Operation, *, isolate: bool) -> Outcome:
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
        return self._result_of(result), None

    def _result_of(self, result: Any) -> Any:
        if isinstance(result, Burned):
            self._checkpoint_wanted = True
            return result.result
        return result


def _failed(batch: list[tuple[Operation, float]], error: BaseException) -> list[Outcome]:
    return [(None, error) for _ in batch]
