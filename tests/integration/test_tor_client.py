"""`--tor` from the client's side: never a direct connection when Tor is down, a clearnet
server reached through the private network's exits, and WebSocket connections through Tor
(the seam rooms use; room clients over Tor come with the relay, issue 17)."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.harness import free_port
from websockets.asyncio.server import ServerConnection, serve

from atopos.client.transport import Transport
from atopos.errors import NetworkError
from tests.servers import ATOPOS, ServerProcess
from tests.tor_network import TorNetwork, tor_network  # noqa: F401 (the fixture)

LINK_KEY = "A" * 43
# Tries of a WebSocket through the young test network, each on a fresh circuit.
_TOR_ATTEMPTS = 3


def atopos(
    *args: str, tor: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ATOPOS, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "ATOPOS_TOR": tor, **(env or {})},
    )


def _has_pending_connection(listener: socket.socket) -> bool:
    readable, _, _ = select.select([listener], [], [], 0.5)
    return bool(readable)


def test_with_tor_down_the_cli_exits_5_and_the_server_sees_no_connection() -> None:
    with socket.socket() as watched:
        # The server, as far as the client can tell: it listens, and the test watches
        # whether anything connects to it.
        watched.bind(("127.0.0.1", 0))
        watched.listen(8)
        server = f"http://127.0.0.1:{watched.getsockname()[1]}"
        dead_tor = f"socks5h://127.0.0.1:{free_port()}"
        # An environment that names the server as one to reach directly changes nothing.
        direct = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        created = atopos(
            "--tor", "--server", server, "secret", "create", tor=dead_tor, stdin=b"x", env=direct
        )
        revealed = atopos(
            "secret",
            "reveal",
            f"{server}/s/{'A' * 22}#{LINK_KEY}",
            "--tor",
            tor=dead_tor,
            env=direct,
        )
        for result in (created, revealed):
            assert result.returncode == 5, result.stderr
            lines = result.stderr.decode().strip().splitlines()
            assert len(lines) == 1, lines
            assert "is Tor running?" in lines[0]
            assert result.stdout == b""
        assert not _has_pending_connection(watched)
        # The watch would have seen one: a direct connection shows at once.
        with socket.create_connection(watched.getsockname(), timeout=5):
            assert _has_pending_connection(watched)


def test_atopos_tor_must_be_socks5h() -> None:
    """socks5:// would have the name resolved here, a DNS query outside Tor."""
    result = atopos("secret", "create", tor="socks5://127.0.0.1:9050", stdin=b"x")
    assert result.returncode == 2
    assert "socks5h://" in result.stderr.decode()


def test_a_clearnet_server_through_tor(
    tor_network: TorNetwork,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log").start()
    try:
        proxy = tor_network.socks_url.replace("socks5h://", "socks5h://clearnet:x@")
        created = atopos("--tor", "--server", server.url, "secret", "create", tor=proxy, stdin=b"y")
        assert created.returncode == 0, created.stderr
        revealed = atopos("--tor", "secret", "reveal", created.stdout.decode().strip(), tor=proxy)
        assert (revealed.returncode, revealed.stdout) == (0, b"y"), revealed.stderr

        # The SDK's asyncio client (rooms' TUI) goes the same way.
        async def health() -> object:
            async with Transport(server.url, proxy=proxy).async_http_client() as client:
                return (await client.get("/healthz")).json()

        assert asyncio.run(health()) == {"status": "ok", "storage": "up"}
    finally:
        server.stop()


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A WebSocket echo server on loopback, in a thread."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Future[None] = loop.create_future()

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port):
            started.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(timeout=10)


def test_websocket_connections_go_through_tor(
    tor_network: TorNetwork,  # noqa: F811
    echo_server: int,
) -> None:
    async def talk(transport: Transport) -> str | bytes:
        async with transport.websocket("/") as connection:
            await connection.send("through tor")
            return await connection.recv()

    # A young network's exit may answer that it cannot reach the server yet: tried again
    # on a fresh circuit (a SOCKS user of its own), and only for that answer.
    refusals: list[str] = []
    for attempt in range(_TOR_ATTEMPTS):
        proxy = tor_network.socks_url.replace("socks5h://", f"socks5h://websocket{attempt}:x@")
        try:
            echoed = asyncio.run(talk(Transport(f"http://127.0.0.1:{echo_server}", proxy=proxy)))
        except NetworkError as exc:
            if "could not reach the server" not in str(exc):
                raise
            refusals.append(str(exc))
            continue
        assert echoed == "through tor"
        return
    pytest.fail("\n".join([*refusals, tor_network.diagnosis()]))


def test_the_async_client_with_tor_down_is_one_sentence() -> None:
    transport = Transport("http://127.0.0.1:9", proxy=f"socks5h://127.0.0.1:{free_port()}")

    async def get() -> None:
        async with transport.async_http_client() as client:
            await client.get("/healthz")

    with pytest.raises(NetworkError, match="is Tor running"):
        asyncio.run(get())


def test_a_websocket_with_tor_down_is_one_sentence_and_no_connection() -> None:
    with socket.socket() as watched:
        watched.bind(("127.0.0.1", 0))
        watched.listen(8)
        transport = Transport(
            f"http://127.0.0.1:{watched.getsockname()[1]}",
            proxy=f"socks5h://127.0.0.1:{free_port()}",
        )

        async def talk() -> None:
            async with transport.websocket("/"):
                pass

        with pytest.raises(NetworkError, match="is Tor running"):
            asyncio.run(talk())
        assert not _has_pending_connection(watched)
