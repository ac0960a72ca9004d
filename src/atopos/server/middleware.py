"""Outermost ASGI layer: security headers on every response, no traceback ever leaves,
and an access log that names the route template and never the path or the client.

WebSocket connections pass the same edge: an error inside a handler closes the socket with
1011 (or refuses the handshake) instead of leaking anything, and the access log records
the route template, the close code and the duration, never the path or the peer."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atopos.clock import Clock, SystemClock

__all__ = ["CONTENT_SECURITY_POLICY", "EdgeMiddleware"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)
_SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]
_SECURITY_HEADER_NAMES = frozenset(name for name, _ in _SECURITY_HEADERS)
_INTERNAL_ERROR = msgspec.json.encode(
    {"error": "internal", "message": "The server failed to handle this request."}
)
_access = logging.getLogger("atopos.access")
_log = logging.getLogger("atopos.server")


# WebSocket close code for "the server met an unexpected condition" (RFC 6455, 7.4.1).
_WS_INTERNAL_ERROR = 1011


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, clock: Clock | None = None) -> None:
        self.app = app
        self._clock = clock or SystemClock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self._clock.monotonic()
        state: dict[str, Any] = {"status": 0}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name not in _SECURITY_HEADER_NAMES
                ]
                headers.extend(_SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            _log.error("unhandled error", exc_info=True)
            if state["status"] == 0:
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            self._log_access(scope, scope["method"], state["status"], started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self._clock.monotonic()
        watched_send = _WatchedSend(send)
        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            _log.error("unhandled error", exc_info=True)
            if not watched_send.is_closed:
                # Before the handshake this refuses it (403 on the wire); after it, a close.
                await watched_send({"type": "websocket.close", "code": _WS_INTERNAL_ERROR})
        finally:
            self._log_access(scope, "WEBSOCKET", watched_send.status, started)

    def _log_access(self, scope: Scope, method: str, status: int, started: float) -> None:
        if _access.isEnabledFor(logging.INFO):
            route = scope.get("route")
            _access.info(
                "request",
                extra={
                    "method": method,
                    "route": getattr(route, "path", "(unmatched)"),
                    "status": status,
                    "ms": round((self._clock.monotonic() - started) * 1000, 2),
                },
            )


class _WatchedSend:
    """A WebSocket's `send` that notes its status for the access log: 101 once accepted,
    then the close code the server sent, if it closed first. (One small object instead of a
    closure and a dict: a room connection keeps it for hours.)"""

    __slots__ = ("_send", "is_closed", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.is_closed = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "websocket.accept":
            self.status = 101
        elif message["type"] == "websocket.close":
            self.is_closed = True
            # A close before the accept refuses the handshake: the client sees a 403.
            self.status = message.get("code", 1000) if self.status else 403
        elif message["type"] == "websocket.http.response.start":
            self.is_closed = True
            self.status = message["status"]
        await self._send(message)
