"""Requests broken on the wire get a clear 4xx (or, when the client is gone, nothing), never
a 500, a traceback or a partial write: invalid UTF-8 inside JSON strings, and uploads their
client abandons half-way (small bodies, and bodies large enough to be stored in chunks)."""

from __future__ import annotations

import socket
import sqlite3
import time

import httpx
import pytest

from tests.api_client import access_params, create, envelope
from tests.servers import ServerProcess


def _rows(server: ServerProcess) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{server.data_dir / 'atopos.db'}?mode=ro", uri=True)
    try:
        secrets = conn.execute("SELECT count(*) FROM secrets").fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    finally:
        conn.close()
    return secrets, chunks


@pytest.mark.parametrize("route", ["ticket", "reveal"])
def test_invalid_utf8_inside_a_json_string_is_a_422(server: ServerProcess, route: str) -> None:
    with httpx.Client(timeout=30) as client:
        sid = create(client, server.url, envelope(b"hi")[0])["id"]
        body = {
            "ticket": b'{"challenge": "\xff\xfe", "nonce": 1}',
            "reveal": b'{"ticket": "abc\xc3"}',
        }[route]
        response = client.post(
            f"{server.url}/api/v1/secrets/{sid}/{route}",
            content=body,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert "unhandled error" not in server.output()


@pytest.mark.parametrize("declared", [200_000, 5 * 1024 * 1024])
def test_an_abandoned_upload_is_no_500_and_leaves_nothing(
    server: ServerProcess, declared: int
) -> None:
    before = _rows(server)
    real = envelope(b"x" * (declared // 2))[0]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/secrets?access_key={access_params(real)['access_key']}".encode()
            + b" HTTP/1.1\r\n"
            + b"Host: atopos\r\n"
            b"Content-Type: application/octet-stream\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
            + real[: declared // 2]
        )
        time.sleep(0.5)  # let the server take the head of the upload before we leave
    deadline = time.monotonic() + 10
    while '"route":"/api/v1/secrets"' not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)  # polled: the access line is written when the request ends
    log = server.output()
    assert '"route":"/api/v1/secrets"' in log
    assert "unhandled error" not in log
    assert '"status":500' not in log
    assert _rows(server) == before
