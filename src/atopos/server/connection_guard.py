"""Timeouts and caps for every connection the node accepts, below the ASGI app.

A client that never finishes its headers, stops sending a body, stops reading an answer or
opens connections by the hundred must not hold the node's memory, file descriptors or a
storage snapshot. uvicorn has a keep-alive timeout but no header, body or write timeout and
no per-client cap, so the node runs its HTTP protocol through this subclass:

- headers: a request's headers must be complete `header_timeout` seconds after its first
  byte (or after the connection opened);
- body: a request body that stops arriving for `body_idle_timeout` seconds ends the
  connection (unless the app itself has paused reading);
- writing: an answer the client stops reading for `send_stall_timeout` seconds ends the
  connection, which also ends the reveal's read snapshot (storage/sqlite.py);
- idle: a kept-alive connection with no new request closes after `idle_timeout` seconds;
- caps: at most `max_connections` open at once, and `max_connections_per_client` from one
  peer address (a trusted proxy's own address is exempt: it carries many clients, and its
  own caps apply, deploy/Caddyfile). Over a cap, the connection is answered 503 or 429 at
  once and closed, before a byte of its request is read.

WebSocket connections count against the same caps; their own timeouts belong to the room
relay.

The onion service's own listener (and only it: `reads_proxy_header`) first reads the PROXY
line tor sends with each stream (server/onion_proxy_header.py) and names the connection's
client by its Tor circuit: every onion client arrives from loopback, and would otherwise
share one per-peer cap and one rate budget. A connection there without that line is closed.
On the open listener a PROXY line is nothing but a malformed HTTP request (400).
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
from typing import Any, cast

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from atopos.server.corked_transport import CorkedTransport
from atopos.server.onion_proxy_header import (
    MAX_PROXY_LINE,
    ProxyHeaderRefused,
    circuit_address,
    parse_proxy_line,
)

__all__ = ["ConnectionLimits", "guarded_http_protocol"]

# Descriptors kept for what is not a client connection: storage files, Redis, logs.
_RESERVED_DESCRIPTORS = 64


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    send_stall_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 1024
    max_connections_per_client: int = 64
    exempt_peers: frozenset[str] = frozenset()

    def effective_max_connections(self) -> int:
        """The total cap, lowered to what the process's descriptor limit allows."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - _RESERVED_DESCRIPTORS))


def _refusal(status: int, reason: bytes, message: str) -> bytes:
    body = msgspec.json.encode({"error": "too_many_connections", "message": message})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"retry-after: 5\r\n",
            b"connection: close\r\n",
            b"content-length: %d\r\n\r\n" % len(body),
            body,
        ]
    )


_SERVER_FULL = _refusal(503, b"Service Unavailable", "The server is at its connection limit.")
_CLIENT_FULL = _refusal(
    429, b"Too Many Requests", "Too many open connections from this client; close some."
)


def guarded_http_protocol(
    limits: ConnectionLimits, *, reads_proxy_header: bool = False
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the node's timeouts and caps; with
    `reads_proxy_header` (the onion listener only), each connection must open with tor's
    PROXY line, and its client is then the Tor circuit that line names."""
    max_connections = limits.effective_max_connections()

    class GuardedHttpProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _stall_timer: asyncio.TimerHandle | None = None
        # The PROXY line read so far; None once it has been read (or on the open listener).
        _proxy_line: bytearray | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # An answer's head and body leave in one send (server/corked_transport.py).
            self.transport = cast(asyncio.Transport, CorkedTransport(transport, self.loop))
            if reads_proxy_header:
                self._proxy_line = bytearray()
            # On the onion listener every peer is tor on loopback: the per-client cap is
            # checked once the PROXY line has named the circuit.
            refusal = self._over_a_cap(per_client=not reads_proxy_header)
            if refusal is not None:
                transport.write(refusal)
                transport.close()
                return
            self._header_timer = self.loop.call_later(limits.header_timeout, self._expire)

        def data_received(self, data: bytes) -> None:
            if self._proxy_line is None:
                super().data_received(data)
                return
            self._proxy_line += data
            end = self._proxy_line.find(b"\r\n")
            if end < 0:
                if len(self._proxy_line) >= MAX_PROXY_LINE:
                    self._expire()
                return
            line, rest = bytes(self._proxy_line[: end + 2]), bytes(self._proxy_line[end + 2 :])
            self._proxy_line = None
            try:
                circuit = parse_proxy_line(line)
            except ProxyHeaderRefused:
                self._expire()
                return
            self.client = (circuit_address(circuit), self.client[1] if self.client else 0)
            refusal = self._over_a_cap(per_client=True)
            if refusal is not None:
                self.transport.write(refusal)
                self.transport.close()
                return
            self._name_websocket_client()
            if rest:
                super().data_received(rest)

        def _name_websocket_client(self) -> None:
            """A WebSocket upgrade hands the socket to a new protocol that reads its peer
            from the socket again: give it the circuit instead."""
            base = self.ws_protocol_class
            if base is None:
                return
            circuit_client = self.client

            class CircuitWebSocket(base):  # type: ignore[misc, valid-type]
                def connection_made(self, transport: asyncio.Transport) -> None:
                    super().connection_made(transport)
                    self.client = circuit_client

            self.ws_protocol_class = CircuitWebSocket

        def _over_a_cap(self, *, per_client: bool) -> bytes | None:
            if len(self.connections) > max_connections:
                return _SERVER_FULL
            if not per_client:
                return None
            peer = self.client[0] if self.client else None
            if peer is None or peer in limits.exempt_peers:
                return None
            same_peer = sum(1 for c in self.connections if _peer_of(c) == peer)
            return _CLIENT_FULL if same_peer > limits.max_connections_per_client else None

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout, self._expire)

        def on_headers_complete(self) -> None:
            self._cancel(self._header_timer)
            self._header_timer = None
            super().on_headers_complete()
            if not self.parser.should_upgrade():
                self._arm_body_timer()

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm_body_timer()

        def on_message_complete(self) -> None:
            self._cancel(self._body_timer)
            self._body_timer = None
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._cancel_timers()
            # The WebSocket protocol gets the socket's own transport: its frames are its own.
            corked = cast(CorkedTransport, self.transport)
            corked.flush()
            self.transport = corked.raw
            super().handle_websocket_upgrade()

        def pause_writing(self) -> None:
            super().pause_writing()
            self._cancel(self._stall_timer)
            self._stall_timer = self.loop.call_later(limits.send_stall_timeout, self._expire)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel(self._stall_timer)
            self._stall_timer = None

        def _arm_body_timer(self) -> None:
            self._cancel(self._body_timer)
            self._body_timer = self.loop.call_later(limits.body_idle_timeout, self._body_idle)

        def _body_idle(self) -> None:
            # The app may have paused reading (its buffer is full): not the client's fault.
            if self.flow is not None and self.flow.read_paused:
                self._arm_body_timer()
            else:
                self._expire()

        def _expire(self) -> None:
            self._cancel_timers()
            if not self.transport.is_closing():
                self.transport.abort()

        def _cancel_timers(self) -> None:
            for timer in (self._header_timer, self._body_timer, self._stall_timer):
                self._cancel(timer)
            self._header_timer = self._body_timer = self._stall_timer = None

        @staticmethod
        def _cancel(timer: asyncio.TimerHandle | None) -> None:
            if timer is not None:
                timer.cancel()

    return GuardedHttpProtocol


def _peer_of(connection: Any) -> str | None:
    client = getattr(connection, "client", None)
    return client[0] if client else None
