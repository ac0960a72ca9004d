"""The per-client connection cap of server/connection_guard.py counts a client as the rate
limits do: an IPv6 client by its /64 (server/identity.py), so one host cannot take the
node's whole connection cap by using a fresh address of its prefix for each connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from atopos.server.connection_guard import ConnectionLimits, guarded_http_protocol


class _Transport(asyncio.Transport):
    def __init__(self, peer: str) -> None:
        super().__init__()
        self._peer = peer
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # As uvicorn reads a peer without a socket object: (host, port).
        if name == "peername":
            return (self._peer, 40000)
        if name == "sockname":
            return ("::1", 8080)
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def _open(loop: asyncio.AbstractEventLoop, peers: list[str], per_client: int) -> list[bytes]:
    """Open a connection from each peer in turn; what the node wrote to each at once."""
    limits = ConnectionLimits(max_connections_per_client=per_client, max_connections=1000)
    protocol_class = guarded_http_protocol(limits)
    config = uvicorn.Config(_app, lifespan="off")
    config.load()
    state = ServerState()
    answers = []
    for peer in peers:
        protocol = protocol_class(config, state, {}, _loop=loop)
        transport = _Transport(peer)
        protocol.connection_made(transport)
        answers.append(transport.written)
    for connection in list(state.connections):
        connection.connection_lost(None)
    return answers


def test_addresses_of_one_ipv6_64_share_one_cap(loop: asyncio.AbstractEventLoop) -> None:
    peers = [f"2001:db8:1:2::{n:x}" for n in range(1, 5)]
    answers = _open(loop, peers, per_client=3)
    assert answers[:3] == [b"", b"", b""]
    assert answers[3].startswith(b"HTTP/1.1 429 ")


def test_other_64s_and_ipv4_addresses_have_caps_of_their_own(
    loop: asyncio.AbstractEventLoop,
) -> None:
    peers = ["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:4::1", "192.0.2.1", "192.0.2.2"]
    assert _open(loop, peers, per_client=1) == [b""] * 5
    # An IPv4 address is its own client (a /64 is no unit for it).
    answers = _open(loop, ["192.0.2.1", "192.0.2.1"], per_client=1)
    assert answers[1].startswith(b"HTTP/1.1 429 ")
