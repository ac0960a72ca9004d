"""uvicorn's HTTP protocol with a response's status line, headers and body in one send().

uvicorn (httptools) writes the status line and headers of a response, then its body, each
straight to the socket: two syscalls and two TCP segments for every small JSON answer, the
single largest cost of the event loop under load (docs/performance.md). The transport given
to uvicorn here holds back a write that starts a turn of the event loop and sends it with
the next write, or at the end of that turn if none comes (a 204, a last chunk). Order is
kept, large writes are never copied into a buffer, and nothing waits beyond the current turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CorkedHttpToolsProtocol", "CorkedTransport"]

# A held-back write is at most a status line and headers; bigger ones are sent at once.
_HOLD_MAX_BYTES = 16 * 1024


class CorkedTransport:
    """A transport proxy: everything but write(), close() and write_eof() goes through."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) < _HOLD_MAX_BYTES:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)
        elif len(data) < _HOLD_MAX_BYTES and not self._transport.is_closing():
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        self._held = None
        # A connection lost meanwhile has nowhere to send the rest of its response.
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        corked: Any = CorkedTransport(transport, asyncio.get_running_loop())
        super().connection_made(corked)
