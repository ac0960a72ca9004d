"""Stamps under races: many distinct stamps at once on a secret with n views give exactly n
envelopes, and one stamp sent many times at once gives exactly one; on SQLite, on SQLite
with two worker processes (and the writer process), and on Redis across two nodes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_client import OCTETS, access_params, envelope, remember
from tests.integration.test_stamp_reveal import server_now, stamped
from tests.redis_servers import start_nodes, write_key_file
from tests.servers import ServerProcess

ATTEMPTS = 100


@pytest.fixture(params=["sqlite", "sqlite-2-workers", "redis-2-nodes"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The base URLs of one node, of one node of two workers, or of two nodes on a Redis."""
    if request.param == "redis-2-nodes":
        redis_url: str = request.getfixturevalue("redis_url")
        key = write_key_file(tmp_path / "atopos.key", os.urandom(32))
        nodes = start_nodes(tmp_path, redis_url, key)
        try:
            yield [node.url for node in nodes]
        finally:
            for node in nodes:
                node.stop()
        return
    env = {"ATOPOS_WORKERS": "2"} if request.param == "sqlite-2-workers" else {}
    server = ServerProcess(data_dir=tmp_path / "data", log_path=tmp_path / "log", env=env)
    server.start()
    try:
        yield [server.url]
    finally:
        server.stop()


async def _race(urls: list[str], views: int, bodies: list[dict[str, object]] | None) -> list[int]:
    """Create a secret of `views` views, then send one stamp request per body at once (the
    i-th to node i % len(urls)); with `bodies` None, ATTEMPTS distinct stamps."""
    limits = httpx.Limits(max_connections=ATTEMPTS, max_keepalive_connections=ATTEMPTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        body, _ = envelope(b"raced for")
        created = await client.post(
            f"{urls[0]}/api/v1/secrets",
            params=access_params(body, views=views),
            content=body,
            headers=OCTETS,
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        remember(sid, body)
        now = server_now(urls[0])
        if bodies is None:
            bodies = [stamped(sid, now) for _ in range(ATTEMPTS)]
        else:
            one = stamped(sid, now)
            bodies = [one] * ATTEMPTS
        start = asyncio.Event()

        async def attempt(n: int, request: dict[str, object]) -> int:
            await start.wait()
            url = urls[n % len(urls)]
            answer = await client.post(f"{url}/api/v1/secrets/{sid}/ticket", json=request)
            if answer.status_code == 200:
                assert answer.content == body
            return answer.status_code

        tasks = [asyncio.create_task(attempt(n, request)) for n, request in enumerate(bodies)]
        start.set()
        return await asyncio.gather(*tasks)


@pytest.mark.parametrize("views", [1, 3])
def test_distinct_stamps_racing_take_exactly_the_views_there_are(
    urls: list[str], views: int
) -> None:
    statuses = asyncio.run(_race(urls, views, None))
    assert statuses.count(200) == views, statuses
    assert statuses.count(404) == ATTEMPTS - views, sorted(set(statuses))


def test_one_stamp_sent_many_times_at_once_takes_exactly_one_view(urls: list[str]) -> None:
    statuses = asyncio.run(_race(urls, 100, []))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(403) == ATTEMPTS - 1, sorted(set(statuses))
