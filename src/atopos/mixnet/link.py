"""Links between mixnet processes: reading one fixed-size frame with a timeout, and an
outbound connection with a bounded queue that reconnects (docs/protocol/mixnet.md, "Links")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from atopos.protocol.mix_link import FRAME_BYTES

__all__ = ["OutboundLink", "read_frame"]


async def read_frame(reader: asyncio.StreamReader, idle_seconds: float) -> bytes | None:
    """The next frame, or None when the peer closed, stalled past `idle_seconds` or cut a
    frame."""
    try:
        async with asyncio.timeout(idle_seconds):
            return await reader.readexactly(FRAME_BYTES)
    except (asyncio.IncompleteReadError, TimeoutError, OSError):
        return None


class OutboundLink:
    """Frames to one peer over one TCP connection. `send` never waits: a full queue drops
    the frame (counted by `on_drop`); a failed connection drops what was queued, as those
    packets are late by now, and is tried again after `retry_delay`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        queue_size: int,
        connect_timeout: float,
        write_timeout: float,
        retry_delay: float,
        on_drop: Callable[[int], None],
    ) -> None:
        self._host, self._port = host, port
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._retry_delay = retry_delay
        self._on_drop = on_drop
        self._task: asyncio.Task[None] | None = None
        self.local_address: tuple[str, int] | None = None  # of the current connection

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    def send(self, frame: bytes) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._on_drop(1)

    def _drop_queued(self) -> None:
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            dropped += 1
        if dropped:
            self._on_drop(dropped)

    async def _run(self) -> None:
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, connected = await asyncio.open_connection(self._host, self._port)
                writer = connected
                self.local_address = connected.get_extra_info("sockname")[:2]
                while True:
                    frame = await self._queue.get()
                    connected.write(frame)
                    async with asyncio.timeout(self._write_timeout):
                        await connected.drain()
            except (OSError, TimeoutError):
                self._drop_queued()
            finally:
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError, TimeoutError):
                        async with asyncio.timeout(self._write_timeout):
                            await writer.wait_closed()
            await asyncio.sleep(self._retry_delay)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
