"""One transport write for an answer's head and its body, where uvicorn makes two.

uvicorn writes the status line and headers of an answer as soon as the app sends
`http.response.start`, and the body when it sends `http.response.body`: two writes, so two
`send` system calls, and on loopback each one also runs the receiver's TCP path (a
profile of the secrets routes put the head's write at a third of the event loop's samples;
one write instead of two saves a few µs per request: docs/performance.md, "Issue 20: the
lean path").

`HeadHeldTransport` stands in for the connection's transport in one request-response cycle
(server/connection_guard.py installs it). It holds the cycle's first write, the head, and
sends it together with the next one, the body, when that comes within the same step of the
event loop; otherwise, at the end of that step, or before the connection is closed, it
sends the head alone. The bytes on the wire and their order are unchanged: only how many
writes carry them. Relies on uvicorn's RequestResponseCycle calling `write`, `close` and
`is_closing` on its `transport` attribute (uvicorn 0.54; tests/unit/test_one_write.py).
"""

from __future__ import annotations

import asyncio

__all__ = ["HeadHeldTransport"]

# Above this, head and body go as two writes: copying a large body costs more than a call.
_JOINED_BODY_BYTES = 64 * 1024


class HeadHeldTransport:
    __slots__ = ("_held", "_is_first", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._is_first = True

    def write(self, data: bytes) -> None:
        if self._is_first:
            self._is_first = False
            self._held = data
            self._loop.call_soon(self._send_held)
            return
        held = self._held
        if held is None:
            self._transport.write(data)
            return
        self._held = None
        if len(data) <= _JOINED_BODY_BYTES:
            self._transport.write(held + data)
        else:
            self._transport.write(held)
            self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._send_held()
        self._transport.close()

    def _send_held(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)
