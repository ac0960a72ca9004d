"""What a client can hold of a node on one connection is bounded by the connection guard
(server/connection_guard.py), where no proxy stands in front of the node (the onion
listener): pipelined requests, the size of a request head, blank lines between requests, a
body that trickles in, and the size of an HTML error page. A real `atopos serve` child
process with short timeouts; clients are raw sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from atopos.crypto.envelope import Metadata, seal
from tests.api_client import create, ticket
from tests.servers import ServerProcess

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: atopos\r\n\r\n"
MISSING = b"GET /api/v1/nowhere HTTP/1.1\r\nHost: atopos\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("edge-limits")
    env = {
        "ATOPOS_HEADER_TIMEOUT": "1",
        "ATOPOS_IDLE_TIMEOUT": "1",
        "ATOPOS_BODY_IDLE_TIMEOUT": "1",
        "ATOPOS_BODY_MIN_RATE": "1K",
    }
    process = ServerProcess(data_dir=root / "data", log_path=root / "server.log", env=env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _connect(server: ServerProcess, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


class _Answers:
    """Reads HTTP answers (each with a Content-Length) off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self.is_closed = False

    def _more(self) -> None:
        piece = self._sock.recv(1 << 20)
        if not piece:
            self.is_closed = True
            raise EOFError
        self._buffer += piece

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self._buffer:
            self._more()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            self._more()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(status_line.split()[1]), headers, body

    def all_until_closed(self) -> list[tuple[int, dict[str, str], bytes]]:
        """Every answer until the server closes (fails on a read timeout: still open)."""
        answers = []
        with contextlib.suppress(EOFError, ConnectionResetError):
            while True:
                answers.append(self.next())
        return answers


def _is_open(sock: socket.socket) -> bool:
    """Whether the server has not closed `sock` (what it sent stays to be read)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except (ConnectionResetError, BrokenPipeError):
        return False
    finally:
        sock.settimeout(10)


def _wait_closed(sock: socket.socket, within: float) -> float:
    """Seconds until the server closes `sock`; fails past `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if not _is_open(sock):
            return time.monotonic() - started
        time.sleep(0.05)  # a poll interval
    pytest.fail(f"the server kept the connection open for {within} s")


# -- pipelining -----------------------------------------------------------------------------


def test_a_few_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(HEALTH + MISSING + HEALTH + MISSING + HEALTH)
        answers = _Answers(sock)
        assert [answers.next()[0] for _ in range(5)] == [200, 404, 200, 404, 200]
        assert _is_open(sock)


def test_a_pipelined_flood_is_answered_up_to_the_cap_then_closed(server: ServerProcess) -> None:
    # One read of 200 requests: uvicorn alone would queue every one (and every further read
    # of them, without bound); the guard queues 8 behind the first and closes after them.
    with _connect(server) as sock:
        sock.sendall(HEALTH * 200)
        answers = _Answers(sock).all_until_closed()
    assert [status for status, _, _ in answers] == [200] * 9
    assert answers[-1][1]["connection"] == "close"


def test_requests_sent_while_an_answer_waits_are_held_and_all_answered(
    server: ServerProcess,
) -> None:
    # Larger than the kernel's socket buffers take while the client does not read.
    content = os.urandom(12 * 1024 * 1024)
    body = seal(content, Metadata("file", len(content)), os.urandom(32), random_bytes=os.urandom)
    with httpx.Client(timeout=30) as client:
        sid = str(create(client, server.url, body, kind="file")["id"])
        value = ticket(client, server.url, sid)
    request = f'{{"ticket": "{value}"}}'.encode()
    with _connect(server) as sock:
        sock.sendall(
            f"POST /api/v1/secrets/{sid}/reveal HTTP/1.1\r\nHost: atopos\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(request)}\r\n\r\n".encode()
            + request
        )
        time.sleep(0.3)  # the reveal's answer now waits for us to read it
        # 30 requests while it waits: more than the queue takes from one read, all held.
        sock.sendall((HEALTH + MISSING) * 15)
        answers = _Answers(sock)
        status, _, revealed = answers.next()
        assert (status, len(revealed)) == (200, len(body))
        held = [answers.next() for _ in range(30)]
    assert [status for status, _, _ in held] == [200, 404] * 15
    assert all("connection" not in headers for _, headers, _ in held)


# -- request heads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Long: " + b"a" * 17_000 + b"\r\n",
        b"".join(b"X-Small-%05d: 1\r\n" % i for i in range(1000)),
    ],
    ids=["one-long-header", "many-small-headers"],
)
def test_a_request_head_over_16_kib_is_refused_with_431(
    server: ServerProcess, headers: bytes
) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: atopos\r\n" + headers + b"\r\n")
        answers = _Answers(sock).all_until_closed()
    assert [status for status, _, _ in answers] == [431]
    assert answers[0][1]["connection"] == "close"


def test_a_head_just_under_the_cap_is_served(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: atopos\r\nX-Long: " + b"a" * 15_000 + b"\r\n\r\n"
        )
        assert _Answers(sock).next()[0] == 200


def test_the_server_stops_reading_an_endless_header(server: ServerProcess) -> None:
    sent = 0
    limit = 16 * 1024 * 1024
    with (
        _connect(server) as sock,
        contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError),
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: atopos\r\nX-Endless: ")
        while sent < limit:
            sock.sendall(b"a" * 65536)
            sent += 65536
    # Refused after 16 KiB: what fits in the socket buffers is all that could be sent.
    assert sent < limit


# -- between requests -----------------------------------------------------------------------


def test_a_blank_line_after_a_request_does_not_keep_the_connection_open(
    server: ServerProcess,
) -> None:
    with _connect(server) as sock:
        sock.sendall(HEALTH)
        assert _Answers(sock).next()[0] == 200
        sock.sendall(b"\r\n")
        _wait_closed(sock, within=4)


def test_blank_lines_forever_do_not_move_the_deadline(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(HEALTH)
        assert _Answers(sock).next()[0] == 200
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while _is_open(sock) and time.monotonic() - started < 6:
                sock.sendall(b"\r\n")
                time.sleep(0.2)
        # The header timeout is 1 s: cut then, not after the last blank line.
        assert time.monotonic() - started < 3
        assert not _is_open(sock)


# -- bodies ---------------------------------------------------------------------------------


def _body_request(length: int) -> bytes:
    return (
        b"POST /api/v1/secrets/AAAAAAAAAAAAAAAAAAAAAA/reveal HTTP/1.1\r\nHost: atopos\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length
    )


def test_a_body_that_trickles_in_is_cut_at_the_minimum_rate(server: ServerProcess) -> None:
    # A byte every 0.3 s never stalls for the body idle timeout (1 s); at 1 KiB/s after a
    # first second, the 4000-byte body is due within 1 + 4 s, and 20 bytes within 1 s.
    with _connect(server) as sock:
        sock.sendall(_body_request(4000))
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while _is_open(sock) and time.monotonic() - started < 8:
                sock.sendall(b" ")
                time.sleep(0.3)
        assert time.monotonic() - started < 4
        assert not _is_open(sock)


def test_a_body_at_a_fair_pace_is_not_cut(server: ServerProcess) -> None:
    # 1.6 KiB/s, above the minimum rate, for 2.5 s: longer than the first second of grace.
    with _connect(server) as sock:
        sock.sendall(_body_request(4000))
        for _ in range(10):
            sock.sendall(b" " * 400)
            time.sleep(0.25)
            assert _is_open(sock)
        # The body is complete and spaces are no JSON: a 4xx, not a cut connection.
        assert 400 <= _Answers(sock).next()[0] < 500


# -- error pages ----------------------------------------------------------------------------


def test_an_error_page_does_not_grow_with_its_path(server: ServerProcess) -> None:
    sizes = []
    for depth in (2, 5000):
        with _connect(server) as sock:
            sock.sendall(
                b"GET /" + b"a/" * depth + b" HTTP/1.1\r\nHost: atopos\r\nAccept: text/html\r\n\r\n"
            )
            status, headers, body = _Answers(sock).next()
        assert status == 404
        assert headers["content-type"].startswith("text/html")
        sizes.append(len(body))
    assert sizes[1] <= sizes[0] + 5 * 3 * 16
