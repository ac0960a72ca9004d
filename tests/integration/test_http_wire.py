"""HTTP/1.1 on a real node's wire, through the connection guard: pipelined answers leave whole
and in order, a head with no body after it (HEAD) is not kept back, and a `100 Continue`
reaches a client that waits for it before sending its body."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlencode, urlsplit

from tests.api_client import access_params, envelope

_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_UNKNOWN_CHALLENGE = b"/api/v1/secrets/" + b"A" * 22 + b"/challenge"


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _read_head(connection: socket.socket) -> bytes:
    """Bytes up to the end of one answer's head (or until the node closes)."""
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _read_to_end(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_pipelined_answers_leave_whole_and_in_order(api: str) -> None:
    requests = b"".join(
        [
            b"POST " + _UNKNOWN_CHALLENGE + b" HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
            # A HEAD answer is a head alone: nothing follows it in its cycle.
            b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        ]
    )
    with _connect(api) as connection:
        connection.sendall(requests)
        received = _read_to_end(connection)
    assert [int(s) for s in _STATUS_LINE.findall(received)] == [404, 200, 200]
    gone, head, get = re.split(rb"(?=HTTP/1\.1 \d{3} )", received)[1:]
    assert gone.endswith(b"}")
    assert b'"error"' in gone
    assert head.endswith(b"\r\n\r\n")
    assert get.endswith(b'{"status":"ok","storage":"up"}')


def test_a_kept_alive_head_alone_is_not_held_back(api: str) -> None:
    with _connect(api) as connection:
        connection.settimeout(5)
        connection.sendall(b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        received = _read_head(connection)
    assert received.startswith(b"HTTP/1.1 200 ")


def test_a_client_that_waits_for_100_continue_gets_it_and_its_answer(api: str) -> None:
    body, _ = envelope(b"sent after the interim answer")
    target = b"/api/v1/secrets?" + urlencode(access_params(body)).encode()
    head = b"".join(
        [
            b"POST " + target + b" HTTP/1.1\r\nhost: x\r\n",
            b"content-type: application/octet-stream\r\nexpect: 100-continue\r\n",
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body),
        ]
    )
    with _connect(api) as connection:
        connection.settimeout(5)
        connection.sendall(head)
        interim = _read_head(connection)
        connection.sendall(body)
        answer = _read_to_end(connection)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert b'"id":' in answer
