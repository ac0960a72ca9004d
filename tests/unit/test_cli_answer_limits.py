"""A JSON answer's size limit holds for its decoded bytes as they stream (issue 19): a
compressed answer (a gzip bomb) is refused without being inflated in memory."""

from __future__ import annotations

import http.server
import json
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import pytest

import atopos.client.secrets  # noqa: F401  (loaded now: imports are not what is measured)
from atopos.cli.exits import ExitCode
from atopos.cli.main import run
from atopos.client.answer_body import read_bounded
from atopos.crypto.base64url import b64url_encode

SECRET_ID = b64url_encode(bytes(range(16)))
TOKEN = b64url_encode(bytes(range(32)))
_INFLATED_BYTES = 256 * 1024 * 1024
# The answer may be read up to its limit (64 KiB) and a network read or two, not inflated
# (before the fix, a bomb held 85 MiB and more).
_MAX_PEAK_BYTES = 16 * 1024 * 1024


def _bomb(wbits: int) -> bytes:
    """256 MiB of zeros, compressed (a few hundred KiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1024 * 1024)
    body = b"".join(compressor.compress(zeros) for _ in range(_INFLATED_BYTES // len(zeros)))
    return body + compressor.flush()


BOMBS = {"gzip": _bomb(16 + zlib.MAX_WBITS), "deflate": _bomb(zlib.MAX_WBITS)}


class _BombServer(http.server.ThreadingHTTPServer):
    encoding = "gzip"


class _BombHandler(http.server.BaseHTTPRequestHandler):
    server: _BombServer

    def _answer(self) -> None:
        body = BOMBS[self.server.encoding]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", self.server.encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bomb_server() -> Iterator[_BombServer]:
    server = _BombServer(("127.0.0.1", 0), _BombHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("encoding", sorted(BOMBS))
@pytest.mark.parametrize("command", ["status", "reveal"])
def test_a_compressed_answer_is_refused_before_it_inflates(
    bomb_server: _BombServer, encoding: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb_server.encoding = encoding
    url = f"http://127.0.0.1:{bomb_server.server_address[1]}"
    link = f"{url}/m/{SECRET_ID}#{TOKEN}" if command == "status" else f"{url}/s/{SECRET_ID}#{TOKEN}"
    tracemalloc.start()
    try:
        code = run(["secret", command, link])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    captured = capsys.readouterr()
    assert code == ExitCode.NETWORK
    assert captured.err.splitlines() == [f"Error: The server at {url} sent an oversized answer."]
    assert peak < _MAX_PEAK_BYTES, f"{peak / 2**20:.0f} MiB held while reading the answer"


@pytest.mark.parametrize("wbits", [16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_a_small_compressed_answer_still_reads(wbits: int) -> None:
    body = b'{"views_left": 1}' * 100
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    encoded = compressor.compress(body) + compressor.flush()
    encoding = "gzip" if wbits > zlib.MAX_WBITS else "deflate"
    response = httpx.Response(
        200, headers={"Content-Encoding": encoding}, stream=httpx.ByteStream(encoded)
    )
    assert read_bounded(response, len(body)) == body
    response = httpx.Response(
        200, headers={"Content-Encoding": encoding}, stream=httpx.ByteStream(encoded)
    )
    assert read_bounded(response, len(body) - 1) is None


def test_a_body_that_does_not_inflate_is_a_decoding_error() -> None:
    response = httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
    )
    with pytest.raises(httpx.DecodingError):
        read_bounded(response, 1000)


class _EnvelopeBombHandler(http.server.BaseHTTPRequestHandler):
    """Answers the challenge and the ticket as a server would, then sends a compressed
    envelope that inflates to 256 MiB."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        step = self.path.rsplit("/", 1)[1]
        if step == "reveal":
            body, encoding = BOMBS["gzip"], "gzip"
        else:
            answer = {"challenge": "c", "bits": 0, "expires_at": 1, "ticket": "t"}
            body, encoding = json.dumps(answer).encode(), "identity"
        self.send_response(200)
        self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_compressed_envelope_streams_in_bounded_pieces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EnvelopeBombHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    link = f"http://127.0.0.1:{server.server_address[1]}/s/{SECRET_ID}#{TOKEN}"
    tracemalloc.start()
    try:
        code = run(["secret", "reveal", link])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.shutdown()
        server.server_close()
        thread.join()
    captured = capsys.readouterr()
    assert code != ExitCode.OK
    assert len(captured.err.splitlines()) == 1
    assert captured.out == ""
    assert peak < _MAX_PEAK_BYTES, f"{peak / 2**20:.0f} MiB held while reading the envelope"
