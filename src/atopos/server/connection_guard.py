"""Timeouts and caps for every connection the node accepts, below the ASGI app.

A client that never finishes its headers, stops sending a body, stops reading an answer or
opens connections by the hundred must not hold the node's memory, file descriptors or a
storage snapshot. uvicorn has a keep-alive timeout but no header, body or write timeout and
no per-client cap, so the node runs its HTTP protocol through this subclass:

- headers: a request's headers must be complete `header_timeout` seconds after its first
  byte (or after the connection opened); a byte that starts no request (llhttp skips a
  CRLF between requests) starts that clock too, and no byte short of a complete head
  restarts it;
- head size: a request line and headers over `max_head_bytes` are answered 431 and the
  connection closed, before the excess reaches the parser (httptools would keep all of it,
  and joins a long header value quadratically);
- body: a request body that stops arriving for `body_idle_timeout` seconds ends the
  connection, and so does one slower on average than `body_min_rate` bytes a second after
  its first `body_idle_timeout` seconds (unless the app itself has paused reading);
- pipelining: while a request waits for its answer, the bytes that follow it are held
  unparsed and reading paused, and they are parsed once every answer is out; requests
  that arrive in one read behind a request in progress are queued up to
  `_MAX_PIPELINED_REQUESTS`, and past that the queued ones are answered and the connection
  is closed (uvicorn alone queues every pipelined request, without bound);
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
from collections.abc import Callable
from typing import Any, cast

import msgspec
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from atopos.server.corked_transport import CorkedTransport
from atopos.server.identity import network_of
from atopos.server.onion_proxy_header import (
    MAX_PROXY_LINE,
    ProxyHeaderRefused,
    circuit_address,
    parse_proxy_line,
)

__all__ = ["ConnectionLimits", "guarded_http_protocol"]

# Descriptors kept for what is not a client connection: storage files, Redis, logs.
_RESERVED_DESCRIPTORS = 64
# Requests parsed from one read behind a request still in progress, queued for their turn.
# Clients that pipeline send a few; past this many the queued ones are answered and the
# connection closed (RFC 9112 section 9.3.2: the client retries the rest on a new one).
_MAX_PIPELINED_REQUESTS = 8
# Held bytes are parsed this many at a time until a request waits for its answer again: no
# slice can hold more requests (each at least 18 bytes) than the queue takes, so a client
# that keeps pipelining is slowed down to the pace of the answers, never cut.
_HELD_SLICE = 128


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    send_stall_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 1024
    max_connections_per_client: int = 64
    exempt_peers: frozenset[str] = frozenset()
    # A request's line and headers together (Caddy's `max_header_size`, deploy/Caddyfile).
    max_head_bytes: int = 16 * 1024
    # The slowest average a request body may arrive at (bytes a second), after its first
    # `body_idle_timeout` seconds: the largest upload (103.6 MiB) may take 1 h 51 min.
    body_min_rate: int = 16 * 1024

    def effective_max_connections(self) -> int:
        """The total cap, lowered to what the process's descriptor limit allows."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - _RESERVED_DESCRIPTORS))


def _refusal(
    status: int, reason: bytes, message: str, error: str = "too_many_connections"
) -> bytes:
    body = msgspec.json.encode({"error": error, "message": message})
    retry = b"retry-after: 5\r\n" if status in (429, 503) else b""
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            retry,
            b"connection: close\r\n",
            b"content-length: %d\r\n\r\n" % len(body),
            body,
        ]
    )


_SERVER_FULL = _refusal(503, b"Service Unavailable", "The server is at its connection limit.")
_CLIENT_FULL = _refusal(
    429, b"Too Many Requests", "Too many open connections from this client; close some."
)
_HEAD_TOO_LARGE = _refusal(
    431,
    b"Request Header Fields Too Large",
    "The request line and headers are too large.",
    error="headers_too_large",
)


class _HoldingFlowControl(FlowControl):
    """uvicorn's read and write flags, except that reading stays paused while the guard
    holds bytes back (uvicorn resumes reading after every answer and on every `receive`)."""

    def __init__(self, transport: asyncio.Transport, is_holding: Callable[[], bool]) -> None:
        super().__init__(transport)
        self._is_holding = is_holding

    def resume_reading(self) -> None:
        if not self._is_holding():
            super().resume_reading()


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
        # Bytes of the request head in progress fed to the parser so far, and how many heads
        # have completed (to tell whether one ended inside a feed).
        _head_bytes: int = 0
        _heads_completed: int = 0
        _is_reading_body: bool = False
        # A body's start (loop time), its bytes so far and when the last of them came.
        _body_started: float = 0.0
        _body_bytes: int = 0
        _body_seen: float = 0.0
        # Bytes that came while a request waited for its answer, not parsed yet.
        _held: bytearray | None = None
        # Past the pipelining cap: the queued requests are answered, the rest is dropped.
        _is_overflowing: bool = False
        # Handed to the WebSocket protocol: nothing more of the socket is ours.
        _is_upgraded: bool = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.flow = _HoldingFlowControl(transport, self._is_holding)
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
                self._receive(data)
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
                self._receive(rest)

        def _receive(self, data: bytes) -> None:
            """Hold what follows a request still waiting for its answer; parse the rest."""
            if self._is_overflowing or self._is_upgraded:
                return
            if self._held is not None or (not self._is_reading_body and self._is_awaiting_answer()):
                if self._held is None:
                    self._held = bytearray()
                self._held += data
                self.flow.pause_reading()
                return
            self._parse(data)

        def _parse(self, data: bytes) -> None:
            """Feed the parser, counting the bytes of a request head against its cap before
            they reach the parser."""
            if self._is_reading_body:
                self._feed(data)
            else:
                # Between requests there is always a deadline: a byte that starts no
                # request (a CRLF) must not leave the connection without one.
                if self._header_timer is None:
                    self._header_timer = self.loop.call_later(limits.header_timeout, self._expire)
                room = limits.max_head_bytes - self._head_bytes
                completed = self._heads_completed
                self._feed(data[:room] if len(data) > room else data)
                if self._heads_completed == completed:
                    if len(data) > room and not self.transport.is_closing():
                        self._refuse_head()
                        return
                    if not self._is_reading_body:
                        self._head_bytes += len(data)
                elif len(data) > room:
                    # The head ended inside the allowance: the rest is body or what
                    # follows the request.
                    self._receive(data[room:])
                    return
            self._ensure_deadline()

        def _feed(self, data: bytes) -> None:
            # uvicorn's: stops its keep-alive timer, feeds the parser, answers 400 to a
            # parse error and hands an upgrade to the WebSocket protocol.
            super().data_received(data)

        def _refuse_head(self) -> None:
            self._cancel_timers()
            self.transport.write(_HEAD_TOO_LARGE)
            self.transport.close()

        def _ensure_deadline(self) -> None:
            """A connection with no request in progress has the header timer or uvicorn's
            keep-alive timer running (an answer sent before its request's body had all
            come leaves neither once that body ends)."""
            if (
                not self._is_upgraded
                and self._header_timer is None
                and self.timeout_keep_alive_task is None
                and not self._is_reading_body
                and not self._is_awaiting_answer()
                and not self.transport.is_closing()
            ):
                self._header_timer = self.loop.call_later(limits.header_timeout, self._expire)

        def _is_awaiting_answer(self) -> bool:
            return bool(self.pipeline) or (
                self.cycle is not None and not self.cycle.response_complete
            )

        def _is_holding(self) -> bool:
            return self._is_overflowing or self._held is not None

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
            # An IPv6 client by its /64, as the rate limits count it (server/identity.py):
            # one host may hold any number of addresses of its prefix.
            network = network_of(peer)
            same_client = sum(1 for c in self.connections if _network_of_connection(c) == network)
            return _CLIENT_FULL if same_client > limits.max_connections_per_client else None

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            self._held = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            if self._is_overflowing:
                return
            super().on_message_begin()
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout, self._expire)

        def on_url(self, url: bytes) -> None:
            if not self._is_overflowing:
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if not self._is_overflowing:
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._cancel(self._header_timer)
            self._header_timer = None
            self._head_bytes = 0
            self._heads_completed += 1
            if self._is_overflowing:
                return
            if len(self.pipeline) >= _MAX_PIPELINED_REQUESTS:
                # The last queued request is answered with `connection: close`; this one
                # and every byte after it are dropped.
                self._is_overflowing = True
                self.cycle.keep_alive = False
                self.flow.pause_reading()
                return
            super().on_headers_complete()
            if not self.parser.should_upgrade():
                self._is_reading_body = True
                self._start_body_timer()

        def on_body(self, body: bytes) -> None:
            if self._is_overflowing:
                return
            super().on_body(body)
            self._body_bytes += len(body)
            self._body_seen = self.loop.time()

        def on_message_complete(self) -> None:
            self._is_reading_body = False
            self._cancel(self._body_timer)
            self._body_timer = None
            if self._is_overflowing:
                return
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._held is not None and not self.transport.is_closing():
                self.loop.call_soon(self._release_held)

        def _release_held(self) -> None:
            """Parse the bytes held while answers were pending, once they all are out."""
            if self._held is None or self._is_awaiting_answer() or self.transport.is_closing():
                return
            data, self._held = bytes(self._held), None
            start = 0
            while start < len(data) and self._held is None and self._is_parsing():
                end = len(data) if self._is_reading_body else start + _HELD_SLICE
                self._receive(data[start:end])
                start = end
            if self._held is not None:
                self._held += data[start:]
            self.flow.resume_reading()

        def _is_parsing(self) -> bool:
            return not (self._is_overflowing or self._is_upgraded or self.transport.is_closing())

        def handle_websocket_upgrade(self) -> None:
            self._is_upgraded = True
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

        def _start_body_timer(self) -> None:
            now = self.loop.time()
            self._body_started = self._body_seen = now
            self._body_bytes = 0
            self._cancel(self._body_timer)
            self._body_timer = self.loop.call_at(self._body_deadline(), self._check_body)

        def _body_deadline(self) -> float:
            """The earlier of: `body_idle_timeout` after the last body bytes, and the time
            by which the bytes so far were due at `body_min_rate` (after a first
            `body_idle_timeout` seconds of grace)."""
            idle = self._body_seen + limits.body_idle_timeout
            due = (
                self._body_started
                + limits.body_idle_timeout
                + self._body_bytes / limits.body_min_rate
            )
            return min(idle, due)

        def _check_body(self) -> None:
            now = self.loop.time()
            if self.flow.read_paused and not self._is_holding():
                # The app has paused reading (its buffer is full): not the client's fault.
                # The client gets `body_idle_timeout` from now, on both counts.
                self._body_seen = now
                self._body_started = max(
                    self._body_started, now - self._body_bytes / limits.body_min_rate
                )
            deadline = self._body_deadline()
            if deadline <= now:
                self._expire()
            else:
                self._body_timer = self.loop.call_at(deadline, self._check_body)

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


def _network_of_connection(connection: Any) -> bytes | None:
    client = getattr(connection, "client", None)
    return network_of(client[0]) if client else None
