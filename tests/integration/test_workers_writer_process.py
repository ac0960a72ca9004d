"""`atopos serve --workers 2` on SQLite commits through one writer process: killed with
SIGKILL mid-load it loses no acknowledged create, the writes waiting for it get 503 and not a
hang, the supervisor starts another and the node writes again; it ends with its supervisor;
its checkpoints after a burn leave no ciphertext on disk (chunked bodies included)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_client import OCTETS, access_params, envelope
from tests.integration import test_durability as durability
from tests.integration import test_workers as workers
from tests.servers import ServerProcess, children_of, is_writer_process

_CREATES = 1500
_KILL_AFTER = 100  # answers


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_WORKERS": "2", "ATOPOS_WRITER_LOCK_WAIT": "5"},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _writer_of(server: ServerProcess) -> int | None:
    writers = [pid for pid in children_of(server) if is_writer_process(pid)]
    assert len(writers) <= 1, writers
    return writers[0] if writers else None


def _create(client: httpx.Client, url: str) -> httpx.Response:
    body = envelope(os.urandom(64))[0]
    return client.post(
        f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
    )


def test_the_writer_process_killed_mid_load_loses_nothing_acknowledged(
    server: ServerProcess,
) -> None:
    victim = _writer_of(server)
    assert victim is not None
    assert len(workers._workers_of(server)) == 2

    async def load_with_a_kill() -> list[httpx.Response | BaseException]:
        answered = 0
        killed = asyncio.Event()
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def create() -> httpx.Response:
                nonlocal answered
                body = envelope(os.urandom(64))[0]
                response = await client.post(
                    f"{server.url}/api/v1/secrets",
                    params=access_params(body),
                    content=body,
                    headers=OCTETS,
                )
                answered += 1
                if answered == _KILL_AFTER and not killed.is_set():
                    # Stopped first, so the writes still coming wait for it: the kill then
                    # surely lands on waiting writes (a bare kill may find none waiting).
                    os.kill(victim, signal.SIGSTOP)
                    killed.set()
                    await asyncio.sleep(0.5)
                    os.kill(victim, signal.SIGKILL)
                return response

            results = await asyncio.gather(
                *(create() for _ in range(_CREATES)), return_exceptions=True
            )
        assert killed.is_set()
        return list(results)

    results = asyncio.run(load_with_a_kill())
    # Every caller was answered (no hang, no reset), with a 201 or a 503.
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert len(responses) == _CREATES, [r for r in results if not isinstance(r, httpx.Response)]
    statuses = {r.status_code for r in responses}
    assert statuses <= {201, 503}, statuses
    assert 503 in statuses  # the kill landed while writes waited for the writer process
    acknowledged = [r.json() for r in responses if r.status_code == 201]
    assert len(acknowledged) >= _KILL_AFTER // 2
    # The supervisor started another writer process, and the node writes again.
    workers._wait_for(lambda: _writer_of(server) not in (None, victim))
    with httpx.Client(timeout=30) as client:
        workers._wait_for(lambda: _create(client, server.url).status_code == 201)
    workers._assert_all_stored(server.url, acknowledged)
    # And after a restart of the whole node.
    server.stop()
    server.start()
    workers._assert_all_stored(server.url, acknowledged)


def test_the_writer_process_ends_with_its_supervisor(server: ServerProcess) -> None:
    writer = _writer_of(server)
    assert writer is not None
    server.kill9()
    workers._wait_for(lambda: workers._is_gone(writer))


def test_no_ciphertext_remains_on_disk_after_the_last_view_with_the_writer_process(
    server: ServerProcess,
) -> None:
    durability.test_no_ciphertext_remains_on_disk_after_the_last_view(server)


def test_a_sigterm_to_every_process_at_once_lets_the_workers_finish_their_writes(
    server: ServerProcess,
) -> None:
    # systemd stops a unit by sending SIGTERM to every process of its control group at once
    # (KillMode=control-group, the default of deploy/systemd/atopos@.service): a request a
    # worker is still finishing must still find the writer process to commit its write.
    assert server.process is not None
    with _request_in_flight(server) as finish:
        for pid in [server.process.pid, *children_of(server)]:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        answer = finish()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert server.process.wait(timeout=20) == 0


def test_a_writer_process_that_dies_while_the_workers_finish_is_started_again(
    server: ServerProcess,
) -> None:
    assert server.process is not None
    with _request_in_flight(server) as finish:
        writer = _writer_of(server)
        assert writer is not None
        server.process.send_signal(signal.SIGTERM)  # the workers now finish their requests
        time.sleep(0.3)
        os.kill(writer, signal.SIGKILL)
        workers._wait_for(lambda: _writer_of(server) not in (None, writer))
        answer = finish()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert server.process.wait(timeout=20) == 0


@contextlib.contextmanager
def _request_in_flight(server: ServerProcess) -> Iterator[Callable[[], bytes]]:
    """A create whose body is half sent (a worker holds it, its write still to come); the
    function sends the rest and returns the answer's head."""
    body = envelope(os.urandom(64))[0]
    query = urllib.parse.urlencode(access_params(body))
    head = (
        f"POST /api/v1/secrets?{query} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.3)  # the request is in a worker's hands

        def finish() -> bytes:
            sock.sendall(body[10:])
            answer = b""
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                assert data, answer
                answer += data
            return answer

        yield finish
