"""uvicorn's WebSocket protocol without frame logging.

uvicorn hands the `websockets` protocol its "uvicorn.error" logger; at debug level that
protocol logs every frame's text ("< TEXT '{...}'"): room ciphertexts, signatures and keys
would reach the logs. This subclass switches that frame log off whatever the level, so
`--log-level debug` stays free of room content (docs/protocol/rooms.md section 12).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["QuietWebSocketProtocol"]


class QuietWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False  # no per-frame debug lines (they hold frame contents)
