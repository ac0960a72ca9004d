"""`Transport` (client/transport.py) builds WebSocket and async HTTP connections that hold
the TLS policy: against real servers on 127.0.0.1, a right pin connects and a wrong pin is
refused right after the TLS handshake, before one byte of the request."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import importlib.util
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tests.tls_certs import Leaf, TestCa
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request

from atopos.client.pinning import PinMismatch, spki_sha256
from atopos.client.transport import TlsPolicy, Transport
from atopos.errors import InvalidInput, NetworkError


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def leaf(ca: TestCa) -> Leaf:
    return ca.issue("server")


def _server_context(leaf: Leaf) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf.cert_path, leaf.key_path)
    return context


def _other_pin() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return hashlib.sha256(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).digest()


@contextlib.asynccontextmanager
async def _echo_server(leaf: Leaf, paths: list[str]) -> AsyncIterator[str]:
    """A real `websockets` server over TLS that echoes; `paths` records every upgrade
    request that reached it."""

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    def record(connection: ServerConnection, request: Request) -> None:
        paths.append(request.path)

    async with serve(
        echo, "127.0.0.1", 0, ssl=_server_context(leaf), process_request=record
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"https://127.0.0.1:{port}"


class _RecordingTlsServer:
    """A TLS server on 127.0.0.1 (its own thread, plain sockets) that keeps what each client
    sent after the handshake (b"" when the handshake or the request never came) and answers
    an HTTP request with 200 "ok"."""

    def __init__(self, leaf: Leaf) -> None:
        self._context = _server_context(leaf)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            with raw:
                raw.settimeout(10)
                self.received.append(self._handle(raw))

    def _handle(self, raw: socket.socket) -> bytes:
        data = b""
        with (
            contextlib.suppress(OSError, ssl.SSLError),
            self._context.wrap_socket(raw, server_side=True) as tls,
        ):
            while b"\r\n\r\n" not in data:
                piece = tls.recv(65536)
                if not piece:
                    break
                data += piece
            if data.startswith(b"GET /hello"):
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return data

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def recording(leaf: Leaf) -> Iterator[_RecordingTlsServer]:
    server = _RecordingTlsServer(leaf)
    try:
        yield server
    finally:
        server.close()


async def _until(received: list[bytes], count: int) -> None:
    for _ in range(1000):
        if len(received) >= count:
            return
        await asyncio.sleep(0.01)  # polling interval, not a wait for an effect
    raise AssertionError("the server did not record the connection")


def test_a_websocket_with_the_right_pin_talks(ca: TestCa, leaf: Leaf) -> None:
    async def scenario() -> None:
        paths: list[str] = []
        async with _echo_server(leaf, paths) as url:
            policy = TlsPolicy(ca_file=ca.cert_path, pins=(_other_pin(), spki_sha256(leaf.der)))
            async with Transport(url, tls=policy).websocket("/rooms/abc") as connection:
                await connection.send("hello")
                assert await connection.recv() == "hello"
        assert paths == ["/rooms/abc"]

    asyncio.run(scenario())


def test_a_websocket_with_a_wrong_pin_sends_no_byte_of_its_request(
    ca: TestCa, recording: _RecordingTlsServer
) -> None:
    async def scenario() -> None:
        policy = TlsPolicy(ca_file=ca.cert_path, pins=(_other_pin(),))
        with pytest.raises(PinMismatch):
            async with Transport(recording.url, tls=policy).websocket("/rooms/abc"):
                pass
        await _until(recording.received, 1)
        assert recording.received == [b""]  # a connection, not one byte of the upgrade

    asyncio.run(scenario())


def test_a_wrong_pin_never_reaches_the_websocket_server(ca: TestCa, leaf: Leaf) -> None:
    async def scenario() -> None:
        paths: list[str] = []
        async with _echo_server(leaf, paths) as url:
            policy = TlsPolicy(ca_file=ca.cert_path, pins=(_other_pin(),))
            with pytest.raises(PinMismatch):
                async with Transport(url, tls=policy).websocket("/rooms/abc"):
                    pass
        assert paths == []

    asyncio.run(scenario())


def test_a_pinned_websocket_refuses_plain_ws() -> None:
    async def scenario() -> None:
        transport = Transport("http://127.0.0.1:9", tls=TlsPolicy(pins=(_other_pin(),)))
        with pytest.raises(NetworkError, match="only be checked over https"):
            async with transport.websocket("/rooms/abc"):
                pass

    asyncio.run(scenario())


def test_the_async_http_client_holds_the_pin(
    ca: TestCa, leaf: Leaf, recording: _RecordingTlsServer
) -> None:
    async def scenario() -> None:
        right = TlsPolicy(ca_file=ca.cert_path, pins=(spki_sha256(leaf.der),))
        async with Transport(recording.url, tls=right).async_http_client() as client:
            assert (await client.get("/hello")).text == "ok"
        await _until(recording.received, 1)
        assert recording.received[0].startswith(b"GET /hello HTTP/1.1")
        wrong = TlsPolicy(ca_file=ca.cert_path, pins=(_other_pin(),))
        async with Transport(recording.url, tls=wrong).async_http_client() as client:
            with pytest.raises(PinMismatch):
                await client.get("/hello")
        await _until(recording.received, 2)
        assert recording.received[1] == b""

    asyncio.run(scenario())


def test_a_transport_keeps_its_policy_for_another_server() -> None:
    policy = TlsPolicy(pins=(_other_pin(),))
    transport = Transport("https://a.example/", tls=policy, proxy="http://127.0.0.1:3128")
    other = transport.with_server("https://b.example")
    assert (other.server, other.tls, other.proxy) == ("https://b.example", policy, transport.proxy)
    assert transport.server == "https://a.example"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that only records the request line and answers 200 "proxied"."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.requestline)
        self.send_response(200)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"proxied")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_http_client_goes_through_the_proxy() -> None:
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
        with Transport("http://atopos.invalid", proxy=proxy_url).http_client() as client:
            assert client.get("/healthz").text == "proxied"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    assert _ProxyHandler.seen == ["GET http://atopos.invalid/healthz HTTP/1.1"]


def test_a_proxy_url_is_checked() -> None:
    with pytest.raises(InvalidInput, match="proxy URL"):
        Transport("http://127.0.0.1:9", proxy="ftp://127.0.0.1:21")
    with pytest.raises(InvalidInput, match="proxy URL"):
        Transport("http://127.0.0.1:9", proxy="not a url at all")


def test_a_socks_proxy_without_its_package_is_one_clear_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lock installs socksio; an install without it (a distribution's packaging, a
    # `pip install --no-deps`) must still fail in one sentence, so hide it from the lookup.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "socksio" else find_spec(name, *args),
    )
    transport = Transport("http://127.0.0.1:9", proxy="socks5h://127.0.0.1:9050")
    with pytest.raises(InvalidInput, match="needs the socksio package"):
        transport.http_client()


def test_through_a_socks_proxy_connecting_may_take_as_long_as_tor_does() -> None:
    # A circuit, and to an onion service a rendezvous, is built while we connect: tor gives
    # up after 2 minutes of it, so our 10 s for a direct connection would cut in first.
    direct = Transport("http://127.0.0.1:9")
    through_tor = Transport("http://x.onion", proxy="socks5h://127.0.0.1:9050")
    assert direct.timeout.connect == 10.0
    assert through_tor.timeout.connect == 120.0
    assert through_tor.with_server("http://y.onion").timeout.connect == 120.0
    assert through_tor.timeout.read == direct.timeout.read
    chosen = httpx.Timeout(3.0)
    assert (
        Transport("http://x.onion", proxy="socks5h://127.0.0.1:9050", timeout=chosen).timeout
        is chosen
    )
    assert Transport("http://a.example", proxy="http://127.0.0.1:3128").timeout.connect == 10.0
