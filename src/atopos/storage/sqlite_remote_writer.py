"""A worker's side of the node's SQLite writer process (storage/sqlite_writer_process.py):
each write is sent as `(name, args)` over one Unix stream connection and waited for.

The connection is made on the first write and made again on the next write after it broke.
A caller never hangs: a broken connection fails every pending write with Unavailable (503).
Each write carries its deadline, `lock_wait` seconds from now: the writer process does not
begin it after that and answers WritersBusy (503, nothing stored), nor waits for the writers'
lock beyond it. The worker waits a moment longer for that answer, `_REPLY_GRACE`, so a write
is answered within `lock_wait + _REPLY_GRACE` seconds in all, and past that gets Unavailable:
its batch may be committing on a slow disk. While more than `_MAX_UNSENT` bytes of frames
wait unsent (the writer process reads nothing: stopped, or far behind) a write gets
WritersBusy at once. A write whose reply was lost may nevertheless have committed: a create
then exists that nobody was told of, a view was spent but not delivered, exactly as when the
one process of a node crashes after a COMMIT. A socket path that is gone (a tmp cleaner that
ignores the directory's lock removed it) is told once in the log, in words: only a restart of
the node makes a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from atopos.clock import Clock
from atopos.errors import Unavailable
from atopos.storage.port import UNAVAILABLE_MESSAGE
from atopos.storage.sqlite_batches import BUSY_MESSAGE, WritersBusy
from atopos.storage.sqlite_write_operations import name_of_registered
from atopos.storage.sqlite_writer_frames import FrameReader, encode_frame, error_from_reply

__all__ = ["RemoteWriter"]

_log = logging.getLogger("atopos.storage")

# Seconds a worker waits beyond a write's deadline for the writer process's answer (which
# is WritersBusy when the write was not begun by then).
_REPLY_GRACE = 1.0
# Bytes of frames a worker keeps queued for a writer process that does not read them (it is
# stopped, or far behind): a write beyond that gets WritersBusy at once (503, nothing sent).
_MAX_UNSENT = 16 * 1024 * 1024


class RemoteWriter:
    """The writes of one worker, run by the node's writer process."""

    def __init__(self, socket_path: Path, clock: Clock, lock_wait: float) -> None:
        self._socket_path = socket_path
        self._clock = clock
        self._lock_wait = lock_wait
        self._ids = itertools.count()
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._has_told_socket_gone = False

    def start(self) -> None:
        """Nothing to start: the connection is made by the first write."""

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def run(self, operation: Callable[..., Any], *args: object) -> Any:
        name = name_of_registered(operation)
        deadline = self._clock.monotonic() + self._lock_wait
        request_id = next(self._ids)
        frame = encode_frame((request_id, name, args, deadline))
        try:
            async with asyncio.timeout(self._lock_wait + _REPLY_GRACE):
                connection = await self._connected()
                return await connection.send(request_id, frame)
        except TimeoutError:
            raise Unavailable(UNAVAILABLE_MESSAGE) from None

    async def _connected(self) -> _Connection:
        if self._connection is not None and not self._connection.is_broken:
            return self._connection
        # One connect for all the writes that find the connection missing at once.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected_or_not)
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_unix_connection(_Connection, str(self._socket_path))
        except FileNotFoundError:
            if not self._has_told_socket_gone:
                self._has_told_socket_gone = True
                _log.error(
                    "writer process unreachable: its socket file is gone (a tmp cleaner may"
                    " have removed its directory); every write fails until the node is"
                    " restarted"
                )
            raise Unavailable(UNAVAILABLE_MESSAGE) from None
        except OSError:
            raise Unavailable(UNAVAILABLE_MESSAGE) from None
        return connection

    def _connected_or_not(self, task: asyncio.Task[_Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()


class _Connection(asyncio.Protocol):
    """One connection to the writer process and the writes waiting for their replies."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._frames = FrameReader()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.is_broken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, but are ones.
        self._transport = cast(asyncio.Transport, transport)

    async def send(self, request_id: int, frame: bytes) -> Any:
        if self.is_broken or self._transport is None:
            raise Unavailable(UNAVAILABLE_MESSAGE)
        if self._transport.get_write_buffer_size() >= _MAX_UNSENT:
            raise WritersBusy(BUSY_MESSAGE)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._transport.write(frame)
            return await future
        finally:
            self._pending.pop(request_id, None)

    def data_received(self, data: bytes) -> None:
        try:
            replies = self._frames.feed(data)
        except Exception:
            self.close()
            return
        for request_id, is_result, value in replies:
            future = self._pending.pop(request_id, None)
            if future is None or future.done():
                continue  # its caller stopped waiting
            if is_result:
                future.set_result(value)
            else:
                try:
                    future.set_exception(error_from_reply(value))
                except TypeError:
                    future.set_exception(Unavailable(UNAVAILABLE_MESSAGE))

    def connection_lost(self, exc: Exception | None) -> None:
        self._break()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._break()

    def _break(self) -> None:
        self.is_broken = True
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(Unavailable(UNAVAILABLE_MESSAGE))
