"""The SQLite writers' lock of `atopos serve --workers N` is waited for at most
ATOPOS_WRITER_LOCK_WAIT seconds (storage/writers_lock.py): while another process (this test)
holds it, every write the workers batch is answered 503 with Retry-After, and nothing of it
is written or acknowledged; once it is free, the next writes succeed, each exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_client import OCTETS, access_params, create, envelope, remember, solved
from tests.servers import ServerProcess

_WAIT_SECONDS = 1


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_WORKERS": "2", "ATOPOS_WRITER_LOCK_WAIT": str(_WAIT_SECONDS)},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def holding_writers_lock(server: ServerProcess) -> Iterator[None]:
    """Hold the writers' flock from this process, as a worker stuck mid-commit would."""
    fd = os.open(server.data_dir / "atopos.db-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def stored_secrets(server: ServerProcess) -> int:
    uri = f"file:{server.data_dir / 'atopos.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM secrets").fetchone()
    return int(count)


def views_left(client: httpx.Client, url: str, created: dict[str, str | int]) -> int:
    status = client.get(
        f"{url}/api/v1/secrets/{created['id']}/status",
        headers={"authorization": f"Bearer {created['manage_token']}"},
    )
    assert status.status_code == 200, status.text
    views: int = status.json()["views_left"]
    return views


def _burst(
    url: str, bodies: list[bytes], one_shot: tuple[str, dict[str, str | int]]
) -> list[httpx.Response]:
    """Creates of `bodies` and one one-shot reveal, all at once (the workers batch them)."""

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            sid, request = one_shot
            requests = [
                client.post(
                    f"{url}/api/v1/secrets",
                    params=access_params(body),
                    content=body,
                    headers=OCTETS,
                )
                for body in bodies
            ]
            requests.append(
                client.post(f"{url}/api/v1/secrets/{sid}/ticket", json={**request, "reveal": True})
            )
            return list(await asyncio.gather(*requests))

    return asyncio.run(scenario())


def test_a_write_that_outwaits_the_lock_gets_503_and_nothing_is_written(
    workers: ServerProcess,
) -> None:
    with httpx.Client(timeout=60) as client:
        kept, _ = envelope(b"stored before the lock was taken")
        created = create(client, workers.url, kept, views=2)
        sid = str(created["id"])
        request = solved(client, workers.url, sid)
        bodies = [envelope(os.urandom(100))[0] for _ in range(6)]
        with holding_writers_lock(workers):
            started = time.monotonic()
            answers = _burst(workers.url, bodies, (sid, request))
            waited = time.monotonic() - started
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "unavailable"
                assert "nothing was stored or spent" in answer.json()["message"]
                assert int(answer.headers["retry-after"]) >= 1
            # Each waited its bound, not forever (and not much longer: one wait per batch).
            assert _WAIT_SECONDS <= waited < 10 * _WAIT_SECONDS
            # Reads need no writers' lock: nothing was stored, no view was spent.
            assert stored_secrets(workers) == 1
            assert views_left(client, workers.url, created) == 2
        # Free again: the same writes go through, each once. The refused one-shot request
        # recorded nothing, so its challenge still buys its view.
        answers = _burst(workers.url, bodies, (sid, request))
        assert [a.status_code for a in answers] == [201] * len(bodies) + [200]
        assert answers[-1].content == kept
        ids = {answer.json()["id"] for answer in answers[:-1]}
        assert len(ids) == len(bodies)
        assert stored_secrets(workers) == 1 + len(bodies)
        assert views_left(client, workers.url, created) == 1
        replayed = client.post(
            f"{workers.url}/api/v1/secrets/{sid}/ticket", json={**request, "reveal": True}
        )
        assert replayed.status_code == 403  # that challenge's one view is spent
        for answer, body in zip(answers[:-1], bodies, strict=True):
            remember(answer.json()["id"], body)
    assert "Traceback" not in workers.output()
