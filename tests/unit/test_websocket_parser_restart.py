"""The room server's WebSocket parser forgets the handshake request and the last frame
between frames (server/websocket_protocol.py), without losing or changing any frame."""

from __future__ import annotations

import gc
import weakref

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from atopos.server.websocket_protocol import forget_parsed

_REQUEST = (
    b"GET /api/v1/rooms/r HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def _masked_text(text: str) -> bytes:
    mask = b"\x01\x02\x03\x04"
    data = text.encode()
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x81, 0x80 | len(data)]) + mask + body


def _opened() -> tuple[ServerProtocol, weakref.ref[Request]]:
    conn = ServerProtocol()
    conn.receive_data(_REQUEST)
    [request] = conn.events_received()
    assert isinstance(request, Request)
    conn.send_response(conn.accept(request))
    return conn, weakref.ref(request)


def test_the_restarted_parser_forgets_the_request() -> None:
    conn, request = _opened()
    forget_parsed(conn)
    gc.collect()
    assert request() is None


def test_a_frame_split_across_reads_arrives_whole_and_in_order() -> None:
    conn, _ = _opened()
    forget_parsed(conn)
    first, second = _masked_text('{"t":"hello"}'), _masked_text('{"t":"again"}')
    wire = first + second
    # Cut mid-header, then mid-next-frame; restarted after each read, as the server does.
    pieces = [wire[:3], wire[3 : len(first) + 1], wire[len(first) + 1 :]]
    received: list[Frame] = []
    for piece in pieces:
        conn.receive_data(piece)
        forget_parsed(conn)
        received += [e for e in conn.events_received() if isinstance(e, Frame)]
    assert [(f.opcode, bytes(f.data)) for f in received] == [
        (Opcode.TEXT, b'{"t":"hello"}'),
        (Opcode.TEXT, b'{"t":"again"}'),
    ]
    assert conn.parser_exc is None
