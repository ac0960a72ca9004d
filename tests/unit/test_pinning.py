"""SPKI pinning in the client: the forms a pin takes, and the check during the TLS
handshake against a real TLS server on loopback that records every byte it receives."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.tls_certs import Leaf, TestCa

from atopos.cli.exits import ExitCode
from atopos.cli.main import run
from atopos.client.api import SecretsApi
from atopos.client.pinning import (
    PIN_MISMATCH,
    PinMismatch,
    describe_certificate,
    format_pin,
    parse_pins,
    pin_context,
    spki_sha256,
)
from atopos.client.transport import TlsPolicy, Transport, build_http_client
from atopos.crypto.base64url import b64url_encode
from atopos.errors import InvalidInput, NetworkError

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class RecordingTlsServer:
    """A TLS server on 127.0.0.1 that answers one HTTP/1.1 request per connection with
    200 "ok" and keeps every application byte a client sent it."""

    def __init__(self, leaf: Leaf) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(leaf.cert_path, leaf.key_path)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.handshakes = 0
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return sum(map(len, self.received))

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            with raw:
                self._handle(raw)

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            tls = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._lock:
            self.handshakes += 1
        data = b""
        with tls, contextlib.suppress(OSError, ssl.SSLError):
            while b"\r\n\r\n" not in data:
                piece = tls.recv(65536)
                if not piece:
                    break
                data += piece
            if data:
                tls.sendall(_RESPONSE)
        with self._lock:
            self.received.append(data)

    def wait_for_connections(self, count: int) -> None:
        # The server thread records a connection after the client has gone; join on it.
        for _ in range(1000):
            with self._lock:
                if len(self.received) >= count:
                    return
            threading.Event().wait(0.01)  # polling interval
        raise AssertionError("the server did not finish the connection")

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def leaf(ca: TestCa) -> Leaf:
    return ca.issue("server")


@pytest.fixture
def server(leaf: Leaf) -> Iterator[RecordingTlsServer]:
    tls_server = RecordingTlsServer(leaf)
    try:
        yield tls_server
    finally:
        tls_server.close()


def _spki_digest(key: ec.EllipticCurvePrivateKey) -> bytes:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def _other_digest() -> bytes:
    return _spki_digest(ec.generate_private_key(ec.SECP256R1()))


# -- pins ---------------------------------------------------------------------------------


def test_the_pin_is_the_sha256_of_the_certificates_subject_public_key_info(
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = TestCa.create(tmp_path).issue("x", key=key)
    assert spki_sha256(leaf.der) == _spki_digest(key)


def test_every_accepted_form_parses_to_the_same_digest() -> None:
    digest = hashlib.sha256(b"some key").digest()
    b64 = base64.b64encode(digest).decode()
    forms = [
        f"sha256/{b64}",
        f"SHA256/{b64}",
        b64,
        b64.rstrip("="),
        f"sha256//{b64}",  # curl's --pinnedpubkey
        digest.hex(),
        f"sha256/{digest.hex().upper()}",
    ]
    for form in forms:
        assert parse_pins(form) == (digest,), form
    assert format_pin(digest) == f"sha256/{b64}"
    assert parse_pins(format_pin(digest)) == (digest,)


def test_a_base64_pin_that_starts_with_a_slash_is_not_taken_for_curls_form() -> None:
    digest = next(
        d
        for n in range(10_000)
        if base64.b64encode(d := hashlib.sha256(n.to_bytes(4, "big")).digest()).startswith(b"/")
    )
    canonical = format_pin(digest)
    assert canonical.startswith("sha256//")
    assert parse_pins(canonical) == (digest,)
    assert parse_pins("sha256/" + canonical[len("sha256/") :].rstrip("=")) == (digest,)
    assert parse_pins("sha256//" + canonical[len("sha256/") :]) == (digest,)  # curl's form


def test_several_pins_are_separated_by_commas_semicolons_or_spaces() -> None:
    first, second = _other_digest(), _other_digest()
    text = f" {format_pin(first)},{format_pin(second)} ; {format_pin(first)} "
    assert parse_pins(text) == (first, second)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        "sha256/",
        "sha256/abc",
        "sha1/" + base64.b64encode(bytes(32)).decode(),
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        "g" * 64,
        "sha256/" + base64.urlsafe_b64encode(b"\xff" * 32).decode(),
    ],
)
def test_anything_else_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_pins(text)


# -- the check ----------------------------------------------------------------------------


def test_the_right_pin_lets_the_request_through(server: RecordingTlsServer, ca: TestCa) -> None:
    pin = spki_sha256(ca.issue("unused").der)  # a key of the same CA, not the server's
    with build_http_client(
        server.url, pin_spki=(pin, _server_digest(server)), ca_file=ca.cert_path
    ) as client:
        response = client.get("/hello")
    assert response.text == "ok"
    server.wait_for_connections(1)
    assert server.received[0].startswith(b"GET /hello HTTP/1.1")


def _server_digest(server: RecordingTlsServer) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        context.wrap_socket(raw) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    server.wait_for_connections(1)
    server.received.clear()
    return spki_sha256(certificate)


def test_a_wrong_pin_closes_the_connection_before_a_byte_of_the_request(
    server: RecordingTlsServer, ca: TestCa
) -> None:
    with (
        build_http_client(server.url, pin_spki=(_other_digest(),), ca_file=ca.cert_path) as client,
        pytest.raises(PinMismatch) as raised,
    ):
        client.post("/api/v1/secrets", content=b"ciphertext")
    assert raised.value.message == PIN_MISMATCH
    assert isinstance(raised.value, NetworkError)
    server.wait_for_connections(1)
    assert server.handshakes == 1  # the TLS handshake happened ...
    assert server.bytes_received == 0  # ... and not one byte of HTTP followed it


def test_a_pin_may_be_given_as_text(server: RecordingTlsServer, ca: TestCa) -> None:
    pins = f"{format_pin(_other_digest())},{format_pin(_server_digest(server))}"
    with build_http_client(server.url, pin_spki=pins, ca_file=ca.cert_path) as client:
        assert client.get("/").text == "ok"
    with (
        build_http_client(
            server.url, pin_spki=format_pin(_other_digest()), ca_file=ca.cert_path
        ) as client,
        pytest.raises(PinMismatch),
    ):
        client.get("/")


def test_a_wrong_pin_fails_even_without_ca_verification(server: RecordingTlsServer) -> None:
    with (
        build_http_client(server.url, verify=False, pin_spki=(_other_digest(),)) as client,
        pytest.raises(PinMismatch),
    ):
        client.get("/")
    server.wait_for_connections(1)
    assert server.bytes_received == 0


def test_a_pin_does_not_replace_ca_verification(server: RecordingTlsServer) -> None:
    pin = _server_digest(server)
    # The right key, but a certificate the default trust store does not know: refused.
    with (
        build_http_client(server.url, pin_spki=(pin,)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get("/")


def test_a_socket_whose_handshake_was_deferred_checks_before_its_first_write(
    server: RecordingTlsServer, ca: TestCa
) -> None:
    context = pin_context(ssl.create_default_context(cafile=str(ca.cert_path)), [_other_digest()])
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False) as tls,
        pytest.raises(PinMismatch),
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_for_connections(1)
    assert server.bytes_received == 0


def test_the_transports_policy_reaches_the_api_client(
    server: RecordingTlsServer, ca: TestCa
) -> None:
    policy = TlsPolicy(ca_file=ca.cert_path, pins=(_other_digest(),))
    with SecretsApi(Transport(server.url, tls=policy)) as api, pytest.raises(PinMismatch):
        api.status(b64url_encode(os.urandom(16)), b64url_encode(os.urandom(32)))
    server.wait_for_connections(1)
    assert server.bytes_received == 0


def test_a_pinned_client_refuses_plain_http_and_foreign_transports() -> None:
    pins = (_other_digest(),)
    with pytest.raises(NetworkError, match="only be checked over https"):
        build_http_client("http://127.0.0.1:9", pin_spki=pins)
    with pytest.raises(ValueError, match="custom transport"):
        build_http_client(
            "https://127.0.0.1:9",
            pin_spki=pins,
            transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        )
    with (
        build_http_client("https://127.0.0.1:9", pin_spki=pins) as client,
        pytest.raises(NetworkError, match="only be checked over https"),
    ):
        client.get("http://127.0.0.1:9/elsewhere")


# -- the CLI ------------------------------------------------------------------------------


def test_the_cli_exits_5_with_one_sentence_on_a_wrong_pin(
    server: RecordingTlsServer, ca: TestCa, capsys: pytest.CaptureFixture[str]
) -> None:
    manage_link = f"{server.url}/m/{b64url_encode(os.urandom(16))}#{b64url_encode(os.urandom(32))}"
    code = run(
        [
            "--pin-spki",
            format_pin(_other_digest()),
            "--ca-file",
            str(ca.cert_path),
            "secret",
            "status",
            manage_link,
        ]
    )
    captured = capsys.readouterr()
    assert code == ExitCode.NETWORK
    assert captured.err.splitlines() == [f"Error: {PIN_MISMATCH}"]
    assert captured.out == ""
    server.wait_for_connections(1)
    assert server.bytes_received == 0


def test_the_cli_refuses_a_malformed_pin_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(["--pin-spki", "sha256/nope", "secret", "status", "https://x/m/a#b"])
    assert code == ExitCode.USAGE
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_atopos_pin_prints_the_pin_that_the_check_accepts(
    server: RecordingTlsServer, ca: TestCa, leaf: Leaf, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--ca-file", str(ca.cert_path), "pin", server.url])
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    assert captured.out.strip() == format_pin(spki_sha256(leaf.der))
    assert "Subject: CN=localhost" in captured.err
    assert "Certificate expires: " in captured.err
    with build_http_client(
        server.url, pin_spki=parse_pins(captured.out), ca_file=ca.cert_path
    ) as client:
        assert client.get("/").text == "ok"


def test_atopos_pin_wants_an_https_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pin", "http://127.0.0.1:9"]) == ExitCode.USAGE
    assert capsys.readouterr().err.splitlines() == [
        "Error: Only an https:// server has a key to pin."
    ]


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x01", os.urandom(600)])
def test_a_certificate_that_cannot_be_read_is_one_network_error(der: bytes) -> None:
    with pytest.raises(NetworkError, match="certificate that cannot be read"):
        describe_certificate(der)
