"""Two `atopos serve` nodes on one Redis (shared key file): exactly-once reveals across
nodes, no acknowledged secret lost to `kill -9` of a node, rate limits that hold across
nodes, and key rotation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode
from atopos.storage.redis import SecretKeys
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
from tests.redis_servers import Nodes, RedisServer, start_all, start_nodes, write_key_file
from tests.servers import ServerProcess

ATTEMPTS = 200


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "atopos.key", os.urandom(32))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Nodes]:
    """Two nodes for the tests of this module that leave them as they found them."""
    tmp_path = tmp_path_factory.mktemp("nodes")
    key = write_key_file(tmp_path / "atopos.key", os.urandom(32))
    started = start_nodes(tmp_path, redis_server.url, key)
    try:
        yield started
    finally:
        for node in started:
            node.stop()


async def _ticket(client: httpx.AsyncClient, url: str, sid: str) -> str:
    challenge = (await client.post(f"{url}/api/v1/secrets/{sid}/challenge")).json()
    nonce = proof_of_work.solve(challenge["challenge"].encode(), challenge["bits"])
    response = await client.post(
        f"{url}/api/v1/secrets/{sid}/ticket",
        json={
            "challenge": challenge["challenge"],
            "nonce": nonce,
            "access_proof": access_proof(sid, challenge["challenge"]),
        },
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["ticket"]
    return value


def _client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=60, limits=limits)


async def _race(urls: list[str], sid: str, tickets: list[str]) -> list[int]:
    """Fire one reveal per ticket at once, the i-th at node i % 2."""
    async with _client(len(tickets)) as client:
        start = asyncio.Event()

        async def attempt(n: int, value: str) -> int:
            await start.wait()
            url = urls[n % len(urls)]
            response = await client.post(
                f"{url}/api/v1/secrets/{sid}/reveal", json={"ticket": value}
            )
            return response.status_code

        tasks = [asyncio.create_task(attempt(n, value)) for n, value in enumerate(tickets)]
        start.set()
        return await asyncio.gather(*tasks)


def test_two_nodes_race_on_a_one_view_secret_gives_exactly_one_200(nodes: Nodes) -> None:
    urls = [nodes.a.url, nodes.b.url]

    async def scenario() -> list[int]:
        async with _client(64) as client:
            body, _ = envelope(b"only once")
            response = await client.post(
                f"{urls[0]}/api/v1/secrets",
                params=access_params(body),
                content=body,
                headers=OCTETS,
            )
            sid = response.json()["id"]
            remember(sid, body)
            # Each ticket comes from the node that will NOT redeem it: the key is shared.
            tickets = await asyncio.gather(
                *(_ticket(client, urls[(n + 1) % 2], sid) for n in range(ATTEMPTS))
            )
        return await _race(urls, sid, list(tickets))

    statuses = asyncio.run(scenario())
    assert len(statuses) >= 200
    assert statuses.count(200) == 1, statuses
    assert statuses.count(404) == ATTEMPTS - 1, sorted(set(statuses))


def test_two_nodes_race_replaying_one_ticket_gives_exactly_one_200(nodes: Nodes) -> None:
    urls = [nodes.a.url, nodes.b.url]

    async def scenario() -> list[int]:
        async with _client(8) as client:
            body, _ = envelope(b"many views")
            response = await client.post(
                f"{urls[0]}/api/v1/secrets",
                params=access_params(body, views=100),
                content=body,
                headers=OCTETS,
            )
            sid = response.json()["id"]
            remember(sid, body)
            value = await _ticket(client, urls[1], sid)
        return await _race(urls, sid, [value] * ATTEMPTS)

    statuses = asyncio.run(scenario())
    assert statuses.count(200) == 1, statuses
    assert statuses.count(403) == ATTEMPTS - 1, sorted(set(statuses))


def test_a_large_secret_streams_from_either_node(nodes: Nodes) -> None:
    content = os.urandom(3 * 1024 * 1024 + 99)
    body, _ = envelope(content)
    with httpx.Client(timeout=60) as client:
        sid = str(create(client, nodes.a.url, body, views=2, kind="file")["id"])
        for node in nodes:
            response = reveal(client, node.url, sid, ticket(client, node.url, sid))
            assert response.status_code == 200
            assert response.content == body
        assert client.post(f"{nodes.a.url}/api/v1/secrets/{sid}/challenge").status_code == 404


def test_a_reader_who_hangs_up_mid_download_leaves_no_chunk(
    nodes: Nodes, redis_server: RedisServer
) -> None:
    body, _ = envelope(os.urandom(8 * 1024 * 1024))
    with httpx.Client(timeout=60) as client:
        sid = str(create(client, nodes.a.url, body, kind="file")["id"])
        value = ticket(client, nodes.b.url, sid)
        with client.stream(
            "POST", f"{nodes.b.url}/api/v1/secrets/{sid}/reveal", json={"ticket": value}
        ) as response:
            assert response.status_code == 200
            assert next(response.iter_raw(65536))
        # Gone at once for every later reader; the chunks go when the stream's end is seen.
        assert client.post(f"{nodes.a.url}/api/v1/secrets/{sid}/challenge").status_code == 404
    keys = SecretKeys(b64url_decode(sid))
    with redis_server.client() as redis_client:
        deadline = time.monotonic() + 10
        while redis_client.exists(*keys.chunks(8), keys.readers) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling interval
        remaining = redis_client.keys(keys.prefix + b"*")
    # Nothing: the view that burned it records no ticket marker (nothing is left to buy).
    assert remaining == []


def test_kill_9_of_a_node_during_a_creation_burst_loses_no_acknowledged_secret(
    nodes: Nodes,
) -> None:
    """Workers create secrets on both nodes without pause; node A is killed mid-burst.
    Every secret that got a 201, from either node, is then found through node B."""
    kill_after = 150
    workers_per_node = 16

    async def scenario() -> tuple[list[dict[str, str]], int]:
        acknowledged: list[dict[str, str]] = []
        failures_on_a = 0
        killed = asyncio.Event()
        async with _client(2 * workers_per_node) as client:

            async def worker(node: ServerProcess) -> None:
                nonlocal failures_on_a
                while True:
                    body, _ = envelope(os.urandom(48))
                    try:
                        response = await client.post(
                            f"{node.url}/api/v1/secrets",
                            params=access_params(body),
                            content=body,
                            headers=OCTETS,
                        )
                    except httpx.HTTPError:
                        assert node is nodes.a
                        assert killed.is_set()
                        failures_on_a += 1
                        return
                    assert response.status_code == 201, response.text
                    acknowledged.append(response.json())
                    if len(acknowledged) >= kill_after and not killed.is_set():
                        killed.set()
                        nodes.a.kill9()
                    if node is nodes.b and killed.is_set() and len(acknowledged) > 2 * kill_after:
                        return

            await asyncio.gather(*(worker(node) for node in nodes for _ in range(workers_per_node)))
        return acknowledged, failures_on_a

    acknowledged, failures_on_a = asyncio.run(scenario())
    assert failures_on_a > 0, "node A must die with requests in flight"
    with httpx.Client(timeout=30) as client:
        for created in acknowledged:
            status = client.get(
                f"{nodes.b.url}/api/v1/secrets/{created['id']}/status",
                headers={"authorization": f"Bearer {created['manage_token']}"},
            )
            assert status.status_code == 200, status.text
            assert status.json()["views_left"] == 1
    nodes.a.start()  # for the next test of the module


def test_rate_limits_hold_across_nodes(
    tmp_path: Path,
    redis_url: str,
    redis_server: RedisServer,
    redis_ephemeral_url: str,
    redis_ephemeral: RedisServer,
    key_file: Path,
) -> None:
    """10 requests a minute per client: alternating between the nodes buys nothing. The
    counters are shared through the Redis without persistence, never the durable one."""
    both = start_nodes(
        tmp_path,
        redis_url,
        key_file,
        ATOPOS_RATE_LIMIT="10",
        ATOPOS_RATE_LIMIT_STORAGE=redis_ephemeral_url,
    )
    try:
        body, _ = envelope(b"limited")
        with httpx.Client(timeout=30) as client:
            statuses = []
            for n in range(11):
                node = both.a if n % 2 == 0 else both.b
                response = client.post(
                    f"{node.url}/api/v1/secrets",
                    params=access_params(body),
                    content=body,
                    headers=OCTETS,
                )
                statuses.append(response.status_code)
            assert statuses[:10] == [201] * 10
            assert statuses[10] == 429
            assert int(response.headers["retry-after"]) >= 1
        assert redis_ephemeral.limit_keys()
        assert not redis_server.limit_keys()
    finally:
        for node in both:
            node.stop()


def test_a_rotated_key_still_accepts_tokens_of_the_previous_one(
    tmp_path: Path, redis_url: str
) -> None:
    """Mid-rotation: node A already signs with the new key (old one on its second line);
    node B still runs with the old key. A accepts B's tickets; B refuses A's."""
    old, new = os.urandom(32), os.urandom(32)
    a = ServerProcess(
        data_dir=tmp_path / "a",
        log_path=tmp_path / "a.log",
        env={
            "ATOPOS_STORAGE": redis_url,
            "ATOPOS_KEY_FILE": str(write_key_file(tmp_path / "new.key", new, old)),
        },
    )
    b = ServerProcess(
        data_dir=tmp_path / "b",
        log_path=tmp_path / "b.log",
        env={
            "ATOPOS_STORAGE": redis_url,
            "ATOPOS_KEY_FILE": str(write_key_file(tmp_path / "old.key", old)),
        },
    )
    start_all(a, b)
    try:
        body, _ = envelope(b"rotating")
        with httpx.Client(timeout=30) as client:
            sid = str(create(client, a.url, body, views=3)["id"])
            assert reveal(client, a.url, sid, ticket(client, b.url, sid)).status_code == 200
            assert reveal(client, b.url, sid, ticket(client, a.url, sid)).status_code == 403
            assert reveal(client, a.url, sid, ticket(client, a.url, sid)).status_code == 200
    finally:
        a.stop()
        b.stop()
