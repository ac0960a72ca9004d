"""Redis going away under running nodes: `kill -9` of Redis keeps every acknowledged secret
(AOF, appendfsync always); with Redis stopped every storage route answers 503 with
Retry-After (never a 404 or a 500) and /healthz says the store is down; when Redis returns,
the nodes serve again by themselves. A rate-limit Redis that is down when a node starts
does not stop it either (test_redis_ratelimit_persistence.py)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atopos.errors import Unavailable
from atopos.server.ratelimit import RateLimits, rate_limit_storage
from atopos.storage.ephemeral_redis import PersistenceCheck
from atopos.storage.redis import RedisSecretStore
from tests.api_client import (
    OCTETS,
    access_params,
    access_proof,
    create,
    envelope,
    remember,
    reveal,
    ticket,
)
from tests.redis_servers import Nodes, RedisServer, start_nodes, write_key_file
from tests.servers import free_port

DOWN = {"status": "unavailable", "storage": "down"}


@pytest.fixture
def redis_alone(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test only: the test kills it."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ephemeral_alone(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis without persistence for rate-limit counters, of this test only: it stops it."""
    server = RedisServer.ephemeral(tmp_path / "redis-ephemeral").start()
    try:
        yield server
    finally:
        server.stop()


def wait_until_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if client.get(f"{url}/healthz").status_code == 200:
                return
            time.sleep(0.02)  # polling interval, not a wait for readiness
    raise TimeoutError(f"{url} did not recover")


def test_kill_9_of_redis_keeps_every_acknowledged_secret(
    tmp_path: Path, redis_alone: RedisServer
) -> None:
    """Creation workers run on both nodes; Redis is killed mid-burst and restarted from its
    files. Every 201 given before the kill is still there, and the nodes serve again."""
    key = write_key_file(tmp_path / "atopos.key", os.urandom(32))
    nodes = start_nodes(tmp_path, redis_alone.url, key)
    kill_after = 200
    try:

        async def burst() -> tuple[list[dict[str, str]], set[int]]:
            acknowledged: list[dict[str, str]] = []
            refused: set[int] = set()
            killed = asyncio.Event()
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:

                async def worker(url: str) -> None:
                    while True:
                        body, _ = envelope(os.urandom(48))
                        response = await client.post(
                            f"{url}/api/v1/secrets",
                            params=access_params(body),
                            content=body,
                            headers=OCTETS,
                        )
                        if response.status_code != 201:
                            assert killed.is_set(), response.text
                            refused.add(response.status_code)
                            return
                        acknowledged.append(response.json())
                        remember(response.json()["id"], body)
                        if len(acknowledged) >= kill_after and not killed.is_set():
                            killed.set()
                            redis_alone.kill9()

                await asyncio.gather(*(worker(node.url) for node in nodes for _ in range(16)))
            return acknowledged, refused

        acknowledged, refused = asyncio.run(burst())
        assert refused == {503}, "without Redis a create is refused, never half-done"
        redis_alone.start()
        for node in nodes:
            wait_until_healthy(node.url)
        with httpx.Client(timeout=30) as client:
            for n, created in enumerate(acknowledged):
                node = nodes.a if n % 2 else nodes.b
                status = client.get(
                    f"{node.url}/api/v1/secrets/{created['id']}/status",
                    headers={"authorization": f"Bearer {created['manage_token']}"},
                )
                assert status.status_code == 200, status.text
            # And the reveal path (its Lua script died with Redis's script cache) works.
            sid = acknowledged[0]["id"]
            assert reveal(client, nodes.a.url, sid, ticket(client, nodes.b.url, sid)).status_code
            assert client.post(f"{nodes.a.url}/api/v1/secrets/{sid}/challenge").status_code == 404
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("rate_limit", ["0", "1000"], ids=["limits-off", "limits-on"])
def test_with_redis_stopped_every_storage_route_is_503_then_service_resumes(
    tmp_path: Path, redis_alone: RedisServer, ephemeral_alone: RedisServer, rate_limit: str
) -> None:
    """With limits on, the shared rate-limit counters (in the Redis without persistence,
    stopped as well) fail first; with limits off, the store itself. Either way: 503 +
    Retry-After, nothing consumed, and recovery on its own."""
    key = write_key_file(tmp_path / "atopos.key", os.urandom(32))
    redis_servers = [redis_alone, ephemeral_alone] if rate_limit != "0" else [redis_alone]
    nodes: Nodes = start_nodes(
        tmp_path,
        redis_alone.url,
        key,
        ATOPOS_RATE_LIMIT=rate_limit,
        ATOPOS_RATE_LIMIT_STORAGE=ephemeral_alone.url,
    )
    node = nodes.a
    try:
        with httpx.Client(timeout=30) as client:
            body, _ = envelope(b"survives the outage")
            created = create(client, node.url, body, views=2)
            sid, token = str(created["id"]), str(created["manage_token"])
            auth = {"authorization": f"Bearer {token}"}
            ready_ticket = ticket(client, node.url, sid)
            challenge = client.post(f"{node.url}/api/v1/secrets/{sid}/challenge").json()

            for server in redis_servers:
                server.stop()

            health = client.get(f"{node.url}/healthz")
            assert health.status_code == 503
            assert health.json() == DOWN
            calls = {
                "create": lambda: client.post(
                    f"{node.url}/api/v1/secrets",
                    params=access_params(body),
                    content=body,
                    headers=OCTETS,
                ),
                "challenge": lambda: client.post(f"{node.url}/api/v1/secrets/{sid}/challenge"),
                "ticket": lambda: client.post(
                    f"{node.url}/api/v1/secrets/{sid}/ticket",
                    json={
                        "challenge": challenge["challenge"],
                        "nonce": 0,
                        "access_proof": access_proof(sid, challenge["challenge"]),
                    },
                ),
                "reveal": lambda: reveal(client, node.url, sid, ready_ticket),
                "status": lambda: client.get(
                    f"{node.url}/api/v1/secrets/{sid}/status", headers=auth
                ),
                "delete": lambda: client.delete(f"{node.url}/api/v1/secrets/{sid}", headers=auth),
            }
            for _ in range(2):  # the second round runs on connections known to be dead
                for route, call in calls.items():
                    response = call()
                    assert response.status_code == 503, (route, response.status_code)
                    assert response.headers["retry-after"] == "5", route
                    assert response.json()["error"] == "unavailable", route

            for server in redis_servers:
                server.start()
            wait_until_healthy(node.url)  # no restart of the node
            assert client.get(f"{node.url}/healthz").json() == {"status": "ok", "storage": "up"}
            # The 503s consumed nothing: the ticket made before the outage still works, and
            # the secret still has both of its views.
            revealed = reveal(client, node.url, sid, ready_ticket)
            assert revealed.status_code == 200
            assert revealed.content == body
            status = client.get(f"{node.url}/api/v1/secrets/{sid}/status", headers=auth)
            assert status.json()["views_left"] == 1
            assert create(client, nodes.b.url, body)["id"]
    finally:
        for each in nodes:
            each.stop()
    output = node.output()
    assert "Traceback" not in output
    assert "unhandled error" not in output
    assert '"status":500' not in output
    assert sid not in output
    # One line when Redis went away (per failing component), one when it came back.
    went_away = output.count('"redis unreachable"') + output.count(
        '"rate-limit storage unreachable"'
    )
    assert 1 <= went_away <= 2, output


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_unreachable_redis_is_unavailable_for_store_and_limits_alike(scheme: str) -> None:
    """Nothing listens on the port: one Redis or a Cluster, the store and the rate limiter
    (with or without its persistence check) answer Unavailable (503), never another error
    (500)."""
    url = f"{scheme}://127.0.0.1:{free_port()}" + ("/0" if scheme == "redis" else "")
    unchecked = RateLimits({"create": 10}, rate_limit_storage(url))
    checked = RateLimits(
        {"create": 10}, rate_limit_storage(url), PersistenceCheck(url, is_default=False)
    )

    async def scenario() -> None:
        store = RedisSecretStore.from_url(url)
        await store.start(0)
        try:
            with pytest.raises(Unavailable):
                await store.check()
            with pytest.raises(Unavailable):
                await store.info(os.urandom(16), 0)
            for limits in (unchecked, checked):
                with pytest.raises(Unavailable):
                    await limits.hit("create", "someone")
                with pytest.raises(Unavailable):
                    await limits.record_failure("someone")
                with pytest.raises(Unavailable):
                    await limits.extra_bits("someone")
        finally:
            await store.aclose()

    asyncio.run(scenario())
