"""`atopos serve --workers 2`: several processes on one port and one SQLite file keep every
guarantee of one process (exactly once, durability under kill -9), the supervisor restarts
a dead worker, workers end with their supervisor, and rooms are refused clearly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_client import OCTETS, access_params, envelope
from tests.integration import test_durability as durability
from tests.servers import ATOPOS, ServerProcess, wait_healthy

_WORKERS = 2


@pytest.fixture
def workers_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_WORKERS": str(_WORKERS)},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _workers_of(server: ServerProcess) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            children.extend(int(c) for c in (task / "children").read_text().split())
    return children


def _wait_for(condition: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)  # polling interval
    raise AssertionError("condition not reached in time")


def _is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of the test's own child is gone too (it is reaped by Popen.wait).
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def _burst(url: str, count: int) -> list[dict[str, str]]:
    async def scenario() -> list[dict[str, str]]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            bodies = [envelope(os.urandom(64))[0] for _ in range(count)]
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{url}/api/v1/secrets",
                        params=access_params(body),
                        content=body,
                        headers=OCTETS,
                    )
                    for body in bodies
                ),
                return_exceptions=True,
            )
        return [
            r.json() for r in responses if isinstance(r, httpx.Response) and r.status_code == 201
        ]

    return asyncio.run(scenario())


def _assert_all_stored(url: str, acknowledged: list[dict[str, str]]) -> None:
    with httpx.Client(timeout=30) as client:
        for created in acknowledged:
            status = client.get(
                f"{url}/api/v1/secrets/{created['id']}/status",
                headers={"authorization": f"Bearer {created['manage_token']}"},
            )
            assert status.status_code == 200, status.text
            assert status.json()["views_left"] == 1


def test_two_workers_serve_from_one_port(workers_server: ServerProcess) -> None:
    assert len(_workers_of(workers_server)) == _WORKERS


def test_race_on_a_one_view_secret_gives_exactly_one_200_with_workers(
    workers_server: ServerProcess,
) -> None:
    durability.test_race_on_a_one_view_secret_gives_exactly_one_200(workers_server)


def test_race_replaying_one_ticket_gives_exactly_one_200_with_workers(
    workers_server: ServerProcess,
) -> None:
    durability.test_race_replaying_one_ticket_gives_exactly_one_200(workers_server)


def test_kill_9_of_every_process_loses_no_acknowledged_secret(
    workers_server: ServerProcess,
) -> None:
    acknowledged = _burst(workers_server.url, 300)
    assert len(acknowledged) == 300
    workers = _workers_of(workers_server)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    workers_server.kill9()
    _wait_for(lambda: all(_is_gone(pid) for pid in workers))
    workers_server.start()
    _assert_all_stored(workers_server.url, acknowledged)


def test_a_worker_killed_mid_burst_is_replaced_and_loses_nothing_acknowledged(
    workers_server: ServerProcess,
) -> None:
    victim = _workers_of(workers_server)[0]

    async def burst_with_a_kill() -> list[dict[str, str]]:
        loop = asyncio.get_running_loop()
        killer = loop.call_later(0.3, os.kill, victim, signal.SIGKILL)
        try:
            return await loop.run_in_executor(None, _burst, workers_server.url, 400)
        finally:
            killer.cancel()

    acknowledged = asyncio.run(burst_with_a_kill())
    assert acknowledged  # the other worker kept answering
    _wait_for(
        lambda: (
            len(_workers_of(workers_server)) == _WORKERS
            and victim not in _workers_of(workers_server)
        )
    )
    wait_healthy(workers_server.url)
    _assert_all_stored(workers_server.url, acknowledged)


def test_workers_end_with_their_supervisor_and_a_restart_finds_every_secret(
    workers_server: ServerProcess,
) -> None:
    acknowledged = _burst(workers_server.url, 100)
    workers = _workers_of(workers_server)
    workers_server.kill9()
    _wait_for(lambda: all(_is_gone(pid) for pid in workers))
    workers_server.start()
    _assert_all_stored(workers_server.url, acknowledged)


def test_sigterm_stops_every_worker(workers_server: ServerProcess) -> None:
    workers = _workers_of(workers_server)
    assert workers_server.process is not None
    workers_server.process.send_signal(signal.SIGTERM)
    assert workers_server.process.wait(timeout=20) == 0
    assert all(_is_gone(pid) for pid in workers)


def test_rooms_are_refused_with_a_clear_503(workers_server: ServerProcess) -> None:
    answer = httpx.post(f"{workers_server.url}/api/v1/rooms", timeout=10)
    assert answer.status_code == 503
    assert "several worker processes" in answer.json()["message"]
    assert "rooms are refused" in workers_server.output()


def test_workers_with_in_memory_rate_limits_refuse_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [ATOPOS, "serve", "--port", "1", "--data", str(tmp_path), "--workers", "2"],
        env={**os.environ, "ATOPOS_RATE_LIMIT": "60"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "shared Redis" in result.stderr
