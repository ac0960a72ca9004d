"""Slow, silent and greedy clients are bounded by the connection guard
(server/connection_guard.py): unfinished headers, stalled bodies and unread answers are cut
by timeouts, and one address cannot hold more than its share of connections. A real
`atopos serve` child process; clients are raw sockets from many loopback source addresses
(all of 127.0.0.0/8 reaches the loopback interface)."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.harness import process_memory_kib

from atopos.crypto.envelope import Metadata, seal
from atopos.server.connection_guard import ConnectionLimits
from tests.api_client import create, envelope, reveal, ticket
from tests.servers import ServerProcess

MiB = 1024 * 1024


@contextlib.contextmanager
def _server(tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    process = ServerProcess(
        data_dir=tmp_path / "data", log_path=tmp_path / "server.log", env=env
    ).start()
    try:
        yield process
    finally:
        process.stop()


def _connect(
    server: ServerProcess, source: str, receive_buffer: int | None = None
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _is_closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed or reset the connection (reading whatever it sent)."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        return False  # nothing to read, and no end of stream: still open
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def _drained_to_the_end(sock: socket.socket) -> int:
    """Read until the server's end of stream (failing if it does not come): the bytes read."""
    sock.setblocking(True)
    sock.settimeout(10)
    received = 0
    with contextlib.suppress(ConnectionResetError):
        while piece := sock.recv(1 << 20):
            received += len(piece)
    return received


def _wait_closed(sock: socket.socket, within: float) -> None:
    """Fails unless the server closes `sock` within `within` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if _is_closed_by_server(sock):
            return
        time.sleep(0.05)  # a poll interval
    pytest.fail(f"the server kept the connection open for {within} s")


def _stalled_upload(server: ServerProcess, source: str) -> socket.socket:
    sock = _connect(server, source)
    sock.sendall(
        b"POST /api/v1/secrets HTTP/1.1\r\nHost: atopos\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 10485760\r\n\r\n"
        + os.urandom(16 * 1024)
    )
    return sock


def test_unfinished_headers_stalled_bodies_and_unread_answers_are_cut(tmp_path: Path) -> None:
    env = {
        "ATOPOS_HEADER_TIMEOUT": "1",
        "ATOPOS_BODY_IDLE_TIMEOUT": "1",
        "ATOPOS_SEND_STALL_TIMEOUT": "1",
    }
    with _server(tmp_path, **env) as server:
        silent = _connect(server, "127.0.0.1")
        half_headers = _connect(server, "127.0.0.1")
        half_headers.sendall(b"POST /api/v1/secrets HTTP/1.1\r\nHost: atopos\r\n")
        half_body = _stalled_upload(server, "127.0.0.1")
        time.sleep(0.3)
        # Not cut at once (a slow client is allowed its timeout)...
        assert not any(_is_closed_by_server(s) for s in (silent, half_headers, half_body))
        # ...but cut once it has passed.
        for sock in (silent, half_headers, half_body):
            _wait_closed(sock, within=5)

        content = os.urandom(10 * MiB)
        body = seal(
            content, Metadata("file", len(content)), os.urandom(32), random_bytes=os.urandom
        )
        with httpx.Client(timeout=60) as client:
            sid = str(create(client, server.url, body, kind="file")["id"])
            value = ticket(client, server.url, sid)
        reader = _connect(server, "127.0.0.1", receive_buffer=4096)
        request = f'{{"ticket": "{value}"}}'.encode()
        reader.sendall(
            f"POST /api/v1/secrets/{sid}/reveal HTTP/1.1\r\nHost: atopos\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(request)}\r\n\r\n".encode()
            + request
        )
        time.sleep(3)  # the reader stalls on purpose; the server must give up on it
        assert _drained_to_the_end(reader) < len(body)


def test_one_address_cannot_hold_more_than_its_share(tmp_path: Path) -> None:
    env = {"ATOPOS_MAX_CONNECTIONS_PER_CLIENT": "4", "ATOPOS_MAX_CONNECTIONS": "12"}
    with _server(tmp_path, **env) as server:
        held = [_connect(server, "127.0.0.7") for _ in range(4)]
        time.sleep(0.2)  # let the server take the four before the fifth
        fifth = _connect(server, "127.0.0.7")
        answer = fifth.recv(4096)
        assert answer.startswith(b"HTTP/1.1 429 ")
        assert b"connection: close" in answer
        # Another address is still served...
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        # ...until the node's own cap is reached.
        held += [_connect(server, f"127.0.1.{n}") for n in range(8)]
        time.sleep(0.2)
        over = _connect(server, "127.0.2.1")
        assert over.recv(4096).startswith(b"HTTP/1.1 503 ")
        for sock in held:
            sock.close()


def _samples(ciphertext: bytes) -> list[bytes]:
    """Sixteen 32-byte runs spread over the ciphertext: a surviving copy of it, or of a
    sixteenth of it, holds one of them. (A search for every run would take minutes.)"""
    step = max(1, (len(ciphertext) - 32) // 16)
    return [ciphertext[i : i + 32] for i in range(0, len(ciphertext) - 32, step)]


def _found_on_disk(data_dir: Path, ciphertexts: list[bytes]) -> int:
    raw = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file())
    return sum(any(s in raw for s in _samples(c)) for c in ciphertexts)


@pytest.mark.slow
def test_a_crowd_of_idle_and_stalled_clients_for_60_seconds(tmp_path: Path) -> None:
    """Issue 19's acceptance: 1,000 idle connections, 200 stalled uploads and a stalled
    reader of a 10 MiB secret held for 60 s, with the default timeouts: other clients are
    answered as fast as before, RSS grows by at most 64 MiB, the timeouts close every held
    connection, and secrets burned meanwhile leave nothing in the database or its WAL."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))  # this test's own sockets
    defaults = ConnectionLimits()
    per_client = str(defaults.max_connections_per_client)
    with (
        _server(tmp_path, ATOPOS_MAX_CONNECTIONS_PER_CLIENT=per_client) as server,
        httpx.Client(timeout=30) as client,
    ):
        assert server.process is not None
        pid = server.process.pid
        small = envelope(os.urandom(60 * 1024))[0]

        def timed_create() -> float:
            started = time.monotonic()
            create(client, server.url, small)
            return time.monotonic() - started

        before = statistics.median(timed_create() for _ in range(20))
        rss_before = process_memory_kib(pid)["vmrss_kib"]

        content = os.urandom(10 * MiB)
        big = seal(content, Metadata("file", len(content)), os.urandom(32), random_bytes=os.urandom)
        sid = str(create(client, server.url, big, kind="file")["id"])
        value = ticket(client, server.url, sid)
        reader = _connect(server, "127.0.3.1", receive_buffer=4096)
        request = f'{{"ticket": "{value}"}}'.encode()
        reader.sendall(
            f"POST /api/v1/secrets/{sid}/reveal HTTP/1.1\r\nHost: atopos\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(request)}\r\n\r\n".encode()
            + request
        )
        # 25 per address: under the per-client cap, so the timeouts must do the work.
        idle = [_connect(server, f"127.0.4.{1 + n // 25}") for n in range(1000)]
        stalled = [_stalled_upload(server, f"127.0.5.{1 + n // 25}") for n in range(200)]

        latencies, burned, rss_peak, wal_peak = [], [], rss_before, 0
        wal = server.data_dir / "atopos.db-wal"
        started = time.monotonic()
        while time.monotonic() - started < 60:
            latencies.append(timed_create())
            body = envelope(os.urandom(60 * 1024))[0]
            burned_id = str(create(client, server.url, body)["id"])
            reveal(client, server.url, burned_id, ticket(client, server.url, burned_id))
            burned.append(body)
            rss_peak = max(rss_peak, process_memory_kib(pid)["vmrss_kib"])
            wal_peak = max(wal_peak, wal.stat().st_size if wal.exists() else 0)
            time.sleep(0.25)  # a steady trickle of other clients, not a load test

        still_open = [s for s in [*idle, *stalled] if not _is_closed_by_server(s)]
        assert still_open == []
        # The kernel still holds what the server had queued for the reader: read it out.
        assert _drained_to_the_end(reader) < len(big)
        during = statistics.median(latencies)
        assert during < 3 * before + 0.05, f"median create {during:.3f} s vs {before:.3f} s"
        assert rss_peak - rss_before <= 64 * 1024, f"RSS grew {rss_peak - rss_before} KiB"
        assert wal_peak < 64 * MiB
        deadline = time.monotonic() + 10
        while _found_on_disk(server.data_dir, [*burned, big]) and time.monotonic() < deadline:
            time.sleep(0.1)  # the checkpoint after the last burn; polled
        assert _found_on_disk(server.data_dir, [*burned, big]) == 0
        for sock in [*idle, *stalled, reader]:
            sock.close()
