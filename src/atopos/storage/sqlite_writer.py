"""Group commit for SQLite in one process: one writer thread, many callers, one fsync per batch.

Every write is a small function run on the writer's connection; the batch itself (savepoints
only after a failure, one transaction, `synchronous=FULL`, the writers' lock, checkpoints
after burns) is storage/sqlite_batches.py, which the node's writer process
(storage/sqlite_writer_process.py) shares. The thread takes all operations that queued up
while the previous batch was committing, commits them in one transaction and only then
resolves the callers' futures. A caller that got a result therefore holds a durable answer,
and many concurrent callers share the cost of one fsync.

`lock_path` names the lock file whose flock a batch holds when other processes may write the
same file. A batch waits for its turn at most `lock_wait` seconds from the submission of its
oldest operation (storage/writers_lock.py), so a write queued behind batches that waited does
not wait again in full; past that nothing of it was begun, and every caller of the batch gets
WritersBusy (503 with Retry-After), none a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from atopos.clock import Clock, SystemClock
from atopos.errors import Unavailable
from atopos.storage.port import UNAVAILABLE_MESSAGE
from atopos.storage.sqlite_batches import MAX_BATCH, BatchCommitter, Outcome
from atopos.storage.sqlite_write_operations import name_of_registered, with_args

__all__ = ["DEFAULT_LOCK_WAIT", "GroupCommitWriter", "Writes"]

T = TypeVar("T")
_STOP = object()
# How long a batch waits for the writers' lock by default (ATOPOS_WRITER_LOCK_WAIT).
DEFAULT_LOCK_WAIT = 5.0
# A queued write: (operation, its caller's future, the caller's loop, its lock deadline).
_Queued = tuple[
    Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop, float
]


class Writes(Protocol):
    """Where a store's write operations run: this process's writer thread, or the node's
    writer process (storage/sqlite_remote_writer.py)."""

    def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def run(self, operation: Callable[..., Any], *args: object) -> Any:
        """`operation(conn, *args)`'s result once committed, or the error it raised."""


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        clock: Clock | None = None,
        *,
        lock_path: Path | None = None,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        self._lock_wait = lock_wait
        self._clock = clock or SystemClock()
        self._committer = BatchCommitter(
            connect, self._clock, lock_path=lock_path, lock_wait=lock_wait
        )
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
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

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)

    async def run(self, operation: Callable[..., Any], *args: object) -> Any:
        name_of_registered(operation)  # what the writer process would refuse, refused here too
        return await self.submit(with_args(operation, args))

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
            self._committer.open()
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                try:
                    first = self._queue.get(timeout=self._committer.checkpoint_wait())
                except queue.Empty:
                    self._committer.checkpoint()
                    continue
                if first is _STOP:
                    break
                batch: list[_Queued] = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                outcomes = self._committer.commit(
                    [(op, deadline) for op, _f, _l, deadline in batch]
                )
                _answer(batch, outcomes)
                self._committer.reopen_if_broken()
                self._committer.checkpoint_if_due()
                if stop:
                    break
        finally:
            # However the thread ends, no caller may wait for it: refuse what is queued and
            # everything submitted from now on.
            self._is_stopped = True
            self._fail_queued()
            self._committer.close()

    def _fail_queued(self) -> None:
        items = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                items.append(item)
        _answer(items, [(None, Unavailable(UNAVAILABLE_MESSAGE)) for _ in items])


def _answer(items: list[_Queued], outcomes: list[Outcome]) -> None:
    """Resolve each item's future with its outcome, on its own event loop, one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for (_op, future, loop, _deadline), outcome in zip(items, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, resolved in by_loop.items():
        # RuntimeError: the loop closed meanwhile; nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, resolved)


def _resolve_all(resolved: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (result, error) in resolved:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
