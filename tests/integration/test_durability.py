"""Exactly-once and durability against `atopos serve` in a child process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx

from atopos.crypto import pow as proof_of_work
from atopos.crypto.envelope import Metadata, seal
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
from tests.servers import ServerProcess


async def _tickets(client: httpx.AsyncClient, url: str, sid: str, count: int) -> list[str]:
    async def one() -> str:
        c = (await client.post(f"{url}/api/v1/secrets/{sid}/challenge")).json()
        nonce = proof_of_work.solve(c["challenge"].encode(), c["bits"])
        response = await client.post(
            f"{url}/api/v1/secrets/{sid}/ticket",
            json={
                "challenge": c["challenge"],
                "nonce": nonce,
                "access_proof": access_proof(sid, c["challenge"]),
            },
        )
        value: str = response.json()["ticket"]
        return value

    return await asyncio.gather(*(one() for _ in range(count)))


def test_race_on_a_one_view_secret_gives_exactly_one_200(server: ServerProcess) -> None:
    attempts = 150

    async def scenario() -> list[int]:
        limits = httpx.Limits(max_connections=attempts, max_keepalive_connections=attempts)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            body, _ = envelope(b"only once")
            response = await client.post(
                f"{server.url}/api/v1/secrets",
                params=access_params(body),
                content=body,
                headers=OCTETS,
            )
            sid = response.json()["id"]
            remember(sid, body)
            tickets = await _tickets(client, server.url, sid, attempts)
            start = asyncio.Event()

            async def attempt(value: str) -> int:
                await start.wait()
                result = await client.post(
                    f"{server.url}/api/v1/secrets/{sid}/reveal", json={"ticket": value}
                )
                return result.status_code

            tasks = [asyncio.create_task(attempt(value)) for value in tickets]
            start.set()
            return await asyncio.gather(*tasks)

    statuses = asyncio.run(scenario())
    assert statuses.count(200) == 1
    assert statuses.count(404) == attempts - 1


def test_race_replaying_one_ticket_gives_exactly_one_200(server: ServerProcess) -> None:
    attempts = 120

    async def scenario() -> list[int]:
        limits = httpx.Limits(max_connections=attempts, max_keepalive_connections=attempts)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            body, _ = envelope(b"many views")
            response = await client.post(
                f"{server.url}/api/v1/secrets",
                params=access_params(body, views=100),
                content=body,
                headers=OCTETS,
            )
            sid = response.json()["id"]
            remember(sid, body)
            (value,) = await _tickets(client, server.url, sid, 1)
            return await asyncio.gather(
                *(
                    client.post(f"{server.url}/api/v1/secrets/{sid}/reveal", json={"ticket": value})
                    for _ in range(attempts)
                )
            )

    statuses = [r.status_code for r in asyncio.run(scenario())]  # type: ignore[attr-defined]
    assert statuses.count(200) == 1
    assert statuses.count(403) == attempts - 1


def test_kill_9_after_a_burst_loses_no_acknowledged_secret(server: ServerProcess) -> None:
    burst = 300

    async def scenario() -> list[dict[str, str]]:
        async with httpx.AsyncClient(timeout=60) as client:
            bodies = [envelope(os.urandom(64))[0] for _ in range(burst)]
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{server.url}/api/v1/secrets",
                        params=access_params(body),
                        content=body,
                        headers=OCTETS,
                    )
                    for body in bodies
                )
            )
        return [r.json() for r in responses if r.status_code == 201]

    acknowledged = asyncio.run(scenario())
    assert len(acknowledged) == burst
    server.kill9()
    server.start()
    with httpx.Client(timeout=30) as client:
        for created in acknowledged:
            status = client.get(
                f"{server.url}/api/v1/secrets/{created['id']}/status",
                headers={"authorization": f"Bearer {created['manage_token']}"},
            )
            assert status.status_code == 200, status.text
            assert status.json()["views_left"] == 1


def _aligned_blocks(data: bytes, size: int = 16) -> set[bytes]:
    return {data[i : i + size] for i in range(0, len(data) - size + 1, size)}


def _remnants(data_dir: Path, ciphertext: bytes) -> list[str]:
    """Files under data_dir that still hold any 31-byte run of the ciphertext.

    Every 31-byte run contains a 16-byte block at an offset that is a multiple of 16, so
    looking for those blocks at every file offset finds every such run (and shorter ones).
    """
    blocks = _aligned_blocks(ciphertext)
    found = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if any(raw[i : i + 16] in blocks for i in range(len(raw) - 15)):
            found.append(path.name)
    return found


def test_no_ciphertext_remains_on_disk_after_the_last_view(server: ServerProcess) -> None:
    key = os.urandom(32)
    small = seal(os.urandom(3000), Metadata("text", 3000), key, random_bytes=os.urandom)
    large_content = os.urandom(2 * 1024 * 1024 + 4321)
    large = seal(large_content, Metadata("file", len(large_content)), key, random_bytes=os.urandom)
    with httpx.Client(timeout=60) as client:
        small_id = str(create(client, server.url, small, views=2)["id"])
        large_id = str(create(client, server.url, large, kind="file")["id"])
        # Stored on disk (WAL or main file): the search must be able to see them first.
        assert _remnants(server.data_dir, small)
        assert _remnants(server.data_dir, large)
        for sid, body, views in ((small_id, small, 2), (large_id, large, 1)):
            for _ in range(views):
                response = reveal(client, server.url, sid, ticket(client, server.url, sid))
                assert response.content == body
        # The burn asks the writer for a checkpoint that empties the WAL; poll for it.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            _remnants(server.data_dir, small) or _remnants(server.data_dir, large)
        ):
            pass
        assert _remnants(server.data_dir, small) == []
        assert _remnants(server.data_dir, large) == []


def test_abandoned_large_reveal_does_not_stall_the_server(server: ServerProcess) -> None:
    """A client that walks away mid-stream must not leave a read snapshot that blocks
    the writer's checkpoints (each would stall every write for the busy timeout)."""
    content = os.urandom(3 * 1024 * 1024)
    key = os.urandom(32)
    body = seal(content, Metadata("file", len(content)), key, random_bytes=os.urandom)
    with httpx.Client(timeout=60) as client:
        for _ in range(3):
            sid = str(create(client, server.url, body, views=2, kind="file")["id"])
            value = ticket(client, server.url, sid)
            with client.stream(
                "POST", f"{server.url}/api/v1/secrets/{sid}/reveal", json={"ticket": value}
            ) as response:
                assert response.status_code == 200
                next(response.iter_raw(65536))
            # The burn of the second view requests a checkpoint while the first view's
            # snapshot may still be open.
            assert reveal(client, server.url, sid, ticket(client, server.url, sid)).content == body
        started = time.monotonic()
        for _ in range(20):
            create(client, server.url, envelope(b"quick")[0])
        elapsed = time.monotonic() - started
    # Twenty durable creates take well under a second here; a stalled writer takes 5 s each.
    assert elapsed < 4, f"20 creates took {elapsed:.1f} s"
