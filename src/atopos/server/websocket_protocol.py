"""uvicorn's WebSocket protocol without frame logging, with a synchronous send for rooms.

uvicorn hands the `websockets` protocol its "uvicorn.error" logger; at debug level that
protocol logs every frame's text ("< TEXT '{...}'"): room ciphertexts, signatures and keys
would reach the logs. This subclass switches that frame log off whatever the level, so
`--log-level debug` stays free of room content (docs/protocol/rooms.md section 12).

It also offers the ASGI extension `SEND_NOW_EXTENSION`: a plain function that frames one
text message and writes it to the transport at once, or answers False when the connection
is closing or its transport is backed up (paused). The room relay fans a frame out to
hundreds of connections; through ASGI every delivery costs a coroutine chain, a timeout
and a task switch, which this path skips while the reader keeps up (docs/performance.md,
"Rooms"). A backed-up connection still goes through ASGI's `websocket.send`, which waits
for the transport and is timed out by the relay.

Its receive queue and its writable flag are the lean ones of `lean_asyncio` (about 3 KiB
less per connection), and once the handshake is answered its response (a header map, about
1 KiB) is dropped instead of kept for the life of the connection: an idle room member
should cost as little as possible. For the same reason, whenever the `websockets` parser
waits between two frames, it is restarted from that very point: its generator otherwise
keeps the handshake request (its header maps) and the last frame received as locals, about
2 to 4 KiB per idle connection.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import Protocol
from websockets.streams import StreamReader

from atopos.server.lean_asyncio import LeanEvent, LeanQueue

__all__ = ["SEND_NOW_EXTENSION", "QuietWebSocketProtocol", "SendNow", "forget_parsed"]

SEND_NOW_EXTENSION = "atopos.websocket.send_now"
"""The scope's `extensions` key whose value is the connection's `SendNow`."""

SendNow = Callable[[bytes], bool]
"""Write one UTF-8 text message now; False if it was not written (queue it instead)."""

_SWITCHING_PROTOCOLS = 101
_BETWEEN_FRAMES = StreamReader.at_eof.__code__
"""The parser waits here, and only here, when it has consumed no byte of the next frame."""
_FRAME_LOOP = Protocol.parse.__code__


def _waits_between_frames(parser: Generator[None]) -> bool:
    """True if `parser` (a connection's parser) is suspended in `Protocol.parse`'s loop,
    before the next frame: a fresh `Protocol.parse` would go on from the same state."""
    outer: Any = None
    inner: Any = parser
    while inner.gi_yieldfrom is not None:
        outer, inner = inner, inner.gi_yieldfrom
    return outer is not None and outer.gi_code is _FRAME_LOOP and inner.gi_code is _BETWEEN_FRAMES


def forget_parsed(conn: Protocol) -> None:
    """Restart `conn`'s parser if it waits between two frames. Its state is the connection's
    and its reader's; its locals are only the request it parsed first and the last frame,
    which a fresh loop forgets."""
    if _waits_between_frames(conn.parser):
        parser = Protocol.parse(conn)
        next(parser)  # runs to the same wait: the reader's buffer is empty
        conn.parser = parser


class QuietWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False  # no per-frame debug lines (they hold frame contents)
        # Duck-typed for the calls uvicorn makes on them (see lean_asyncio).
        self.queue = LeanQueue()  # type: ignore[assignment]
        self.writable = LeanEvent()  # type: ignore[assignment]
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        forget_parsed(self.conn)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == _SWITCHING_PROTOCOLS:
            # The app's task is created but has not run yet: it sees the extension.
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[SEND_NOW_EXTENSION] = self.send_text_now

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # Read only by the handshake (handle_connect and the accept above). The request
            # stays referenced by the websockets parser anyway.
            del self.request, self.response

    def send_text_now(self, data: bytes) -> bool:
        """Frame `data` (UTF-8 text) and hand it to the transport, if the handshake is done,
        no close was sent or received and the transport is not paused; else False."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(data)
            self.transport.write(b"".join(self.conn.data_to_send()))
        except (InvalidState, RuntimeError, OSError):
            # The peer's close arrived first, or the transport just failed: the caller's
            # queued path meets the same state through ASGI and ends this connection; the
            # fan-out (another connection's task) must not see this one's error.
            return False
        return True
