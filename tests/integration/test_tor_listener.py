"""The onion listener without Tor: a node in this process with both listeners, spoken to
with raw sockets that write tor's PROXY line themselves. The circuit names the client on
the onion listener only; the open listener refuses the line (tests/integration/
test_tor_onion.py runs the same through real tor processes)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from bench.harness import free_port
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

from atopos.server.app import create_app
from atopos.server.client_address import client_address_source
from atopos.server.config import ServerConfig
from atopos.server.connection_guard import ConnectionLimits, guarded_http_protocol
from atopos.server.onion_proxy_header import ProxyHeaderRefused, parse_proxy_line
from atopos.server.runner import NodeServer, listening_socket, uvicorn_config
from tests.api_client import access_params, envelope
from tests.servers import ManualClock, wait_healthy

CREATE_LIMIT = 2


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(open port, onion listener port) of one node with a creation budget of 2."""
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, rate_create=CREATE_LIMIT)
    port = free_port()
    onion = listening_socket("127.0.0.1", 0)
    limits = config.connection_limits()
    server = NodeServer(
        uvicorn_config(create_app(config, clock=ManualClock(1_800_000_000)), "127.0.0.1", port),
        onion_listener=onion,
        onion_protocol=guarded_http_protocol(limits, reads_proxy_header=True),
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        yield port, onion.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        onion.close()


def _proxy_line(circuit: int) -> bytes:
    # As tor 0.4.9 writes it (server/onion_proxy_header.py).
    return b"PROXY TCP6 fc00:dead:beef:4dad::%x:%x ::1 %d 80\r\n" % (
        circuit >> 16,
        circuit & 0xFFFF,
        circuit & 0xFFFF,
    )


def _create(port: int, prefix: bytes) -> bytes:
    """POST one secret on a new connection that starts with `prefix`; the raw answer."""
    body = envelope(b"x")[0]
    query = urlencode(access_params(body)).encode()
    request = prefix + (
        b"POST /api/v1/secrets?" + query + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request + body)
        return _read_all(sock)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_each_circuit_has_its_own_budget_on_the_onion_listener(node: tuple[int, int]) -> None:
    _, onion = node
    first = [_status(_create(onion, _proxy_line(7))) for _ in range(CREATE_LIMIT + 1)]
    # A new connection on the same circuit is the same client.
    assert first == [201] * CREATE_LIMIT + [429]
    # Another circuit (the top 16 bits differ too), all from 127.0.0.1 as well.
    other = [_status(_create(onion, _proxy_line(0x10007))) for _ in range(CREATE_LIMIT + 1)]
    assert other == [201] * CREATE_LIMIT + [429]


def test_the_onion_listener_closes_a_connection_without_the_proxy_line(
    node: tuple[int, int],
) -> None:
    _, onion = node
    assert _create(onion, b"") == b""
    assert _create(onion, b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n") == b""
    assert _create(onion, b"PROXY TCP6 fc00:dead:beef:4dae::7 ::1 7 80\r\n") == b""
    # A line that never ends is cut off at the specification's length.
    with socket.create_connection(("127.0.0.1", onion), timeout=10) as sock:
        sock.sendall(b"PROXY " + b"1" * 200)
        assert _read_all(sock) == b""


def test_a_proxy_line_on_the_open_listener_is_refused_and_names_no_circuit(
    node: tuple[int, int],
) -> None:
    port, _ = node
    # Refused as HTTP, whatever circuit it names...
    for circuit in range(1, 4):
        assert _status(_create(port, _proxy_line(circuit))) == 400
    # ...so it cannot buy budgets: this peer's own budget is untouched by those, and runs
    # out as one client's.
    statuses = [_status(_create(port, b"")) for _ in range(CREATE_LIMIT + 1)]
    assert statuses == [201] * CREATE_LIMIT + [429]


@pytest.mark.parametrize(
    ("line", "circuit"),
    [
        (b"PROXY TCP6 fc00:dead:beef:4dad::0:18 ::1 24 80\r\n", 24),
        (b"PROXY TCP6 fc00:dead:beef:4dad::1:2 ::1 2 80\r\n", 0x10002),
        (b"PROXY TCP6 fc00:dead:beef:4dad:0:0:ffff:ffff ::1 65535 443\r\n", 0xFFFFFFFF),
    ],
)
def test_tor_proxy_lines_name_their_circuit(line: bytes, circuit: int) -> None:
    assert parse_proxy_line(line) == circuit


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP6 fc00:dead:beef:4dad::0:18 ::1 24 80\n",
        b"PROXY TCP6 fc00:dead:beef:4dae::0:18 ::1 24 80\r\n",
        b"PROXY TCP6 fc00:dead:beef:4dad:1::18 ::1 24 80\r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 24 80\r\n",
        b"PROXY UNKNOWN\r\n",
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP6 fc00:dead:beef:4dad::0:18 ::1 24 80\r\nextra",
    ],
)
def test_other_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProxyHeaderRefused):
        parse_proxy_line(line)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def _client_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that tells a WebSocket client who the node thinks it is."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": client_address_source(()).address_of(scope)})
    await send({"type": "websocket.close", "code": 1000})


def test_a_websocket_on_the_onion_listener_is_named_by_its_circuit() -> None:
    """The relay's WebSocket handshakes (rooms) see the circuit too, not tor's 127.0.0.1."""
    onion = listening_socket("127.0.0.1", 0)
    config = uvicorn_config(_client_echo, "127.0.0.1", free_port())
    server = NodeServer(
        config,
        onion_listener=onion,
        onion_protocol=guarded_http_protocol(ConnectionLimits(), reads_proxy_header=True),
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    async def who_am_i() -> str | bytes:
        raw = socket.create_connection(onion.getsockname(), timeout=10)
        raw.sendall(_proxy_line(0x2A0005))
        async with connect(f"ws://127.0.0.1:{onion.getsockname()[1]}/", sock=raw) as ws:
            return await ws.recv()

    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)  # polling interval, not a wait for readiness
        assert asyncio.run(who_am_i()) == f"tor-circuit:{0x2A0005}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        onion.close()
