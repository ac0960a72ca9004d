"""A connection's transport whose writes of one event-loop turn leave in one `send()`.

uvicorn writes an HTTP answer's head and its body with two `transport.write` calls, and
uvloop sends each at once: two system calls and two wake-ups of the client for every
answer, about a third of a worker's time on the hot routes in a py-spy profile
(docs/performance.md). Held until the end of the loop's turn, they leave together; nothing
waits longer than the turn, and a close or an end of file sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CorkedTransport"]


class CorkedTransport:
    """Wraps an asyncio transport: `write` holds the data until the loop's turn ends;
    everything else is the wrapped transport's (`raw`)."""

    __slots__ = ("_held", "_loop", "raw")

    def __init__(self, raw: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.raw = raw
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        # A copy of what is not bytes: the caller may reuse its buffer once this returns.
        self._held.append(data if isinstance(data, bytes) else bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what is held now (nothing if the connection is closing)."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self.raw.is_closing():
            self.raw.write(data)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() + sum(len(data) for data in self._held)

    def write_eof(self) -> None:
        self.flush()
        self.raw.write_eof()

    def close(self) -> None:
        self.flush()
        self.raw.close()

    def abort(self) -> None:
        self._held.clear()
        self.raw.abort()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, set_protocol ...: the wrapped one's.
        return getattr(self.raw, name)
