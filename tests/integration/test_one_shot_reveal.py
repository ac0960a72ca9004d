"""The ticket step with `"reveal": true` (docs/protocol/access.md): the ticket is redeemed in
the same request, with the reveal step's guarantees (one view per challenge, exactly once,
nothing spent without the key-knowledge proof)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from atopos.client.api import SecretsApi
from atopos.client.secrets import create_secret, reveal_secret
from atopos.errors import Gone
from tests.api_client import (
    OCTETS,
    access_params,
    create,
    envelope,
    remember,
    solved,
    views_left,
)
from tests.servers import ServerProcess


def _one_shot(client: httpx.Client, url: str, sid: str, body: dict[str, object]) -> httpx.Response:
    return client.post(f"{url}/api/v1/secrets/{sid}/ticket", json={**body, "reveal": True})


def test_the_ticket_step_with_reveal_answers_the_envelope_and_spends_one_view(
    server: ServerProcess,
) -> None:
    body, _ = envelope(os.urandom(200))
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=2)
        sid = str(created["id"])
        first = _one_shot(client, server.url, sid, solved(client, server.url, sid))
        assert first.status_code == 200, first.text
        assert first.headers["content-type"] == "application/octet-stream"
        assert first.content == body
        assert views_left(client, server.url, created) == 1
        second = _one_shot(client, server.url, sid, solved(client, server.url, sid))
        assert second.content == body
        # The last view burned it: a new challenge finds nothing.
        assert client.post(f"{server.url}/api/v1/secrets/{sid}/challenge").status_code == 404


def test_one_challenge_buys_one_view_whichever_step_redeems_it(server: ServerProcess) -> None:
    body, _ = envelope(b"three views")
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=3)
        sid = str(created["id"])
        request = solved(client, server.url, sid)
        assert _one_shot(client, server.url, sid, request).status_code == 200
        replayed = _one_shot(client, server.url, sid, request)
        assert replayed.status_code == 403
        # A ticket minted from the same challenge by the two-step path is used up too.
        ticket = client.post(f"{server.url}/api/v1/secrets/{sid}/ticket", json=request)
        assert ticket.status_code == 200
        reveal = client.post(
            f"{server.url}/api/v1/secrets/{sid}/reveal", json={"ticket": ticket.json()["ticket"]}
        )
        assert reveal.status_code == 403
        assert views_left(client, server.url, created) == 2


def test_a_wrong_access_proof_with_reveal_spends_nothing(server: ServerProcess) -> None:
    body, _ = envelope(b"keyed")
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body)
        sid = str(created["id"])
        request = solved(client, server.url, sid)
        wrong = {**request, "access_proof": solved(client, server.url, sid)["access_proof"]}
        refused = _one_shot(client, server.url, sid, wrong)
        assert refused.status_code == 403
        assert refused.json()["error"] == "wrong_key"
        assert views_left(client, server.url, created) == 1
        assert _one_shot(client, server.url, sid, request).content == body


def test_racing_one_shot_reveals_of_a_one_view_secret_give_exactly_one_200(
    server: ServerProcess,
) -> None:
    attempts = 100

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
            with httpx.Client(timeout=30) as sync_client:
                requests = [solved(sync_client, server.url, sid) for _ in range(attempts)]
            start = asyncio.Event()

            async def attempt(request: dict[str, str | int]) -> int:
                await start.wait()
                answer = await client.post(
                    f"{server.url}/api/v1/secrets/{sid}/ticket", json={**request, "reveal": True}
                )
                return answer.status_code

            tasks = [asyncio.create_task(attempt(request)) for request in requests]
            start.set()
            return await asyncio.gather(*tasks)

    statuses = asyncio.run(scenario())
    assert statuses.count(200) == 1
    assert statuses.count(404) == attempts - 1


def test_the_sdk_reveals_in_two_requests_by_default(server: ServerProcess) -> None:
    paths: list[str] = []

    def record(request: httpx.Request) -> None:
        paths.append(request.url.path.rsplit("/", 1)[-1])

    with SecretsApi(server.url) as api:
        made = create_secret(api, b"plain", expires_in=600, views=2)
        api._client.event_hooks["request"].append(record)
        out = bytearray()
        reveal_secret(api, made.share_link, out.extend, stamp=False)
        assert bytes(out) == b"plain"
        assert paths == ["challenge", "ticket"]
        # The other view, the three-step way, which a caller may still ask for.
        out.clear()
        reveal_secret(api, made.share_link, out.extend, one_shot=False)
        assert bytes(out) == b"plain"
        assert paths[2:] == ["challenge", "ticket", "reveal"]
        with pytest.raises(Gone):
            reveal_secret(api, made.share_link, out.extend, one_shot=True)


def test_a_one_shot_reveal_counts_against_the_reveal_limit_too(tmp_path: Path) -> None:
    # Only the reveal route is limited (2 a minute): the one-shot ticket step must spend that
    # budget, or it would be a way around it; the third is refused and spends no view.
    limited = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_RATE_LIMIT": "0", "ATOPOS_RATE_REVEAL": "2"},
    ).start()
    try:
        body, _ = envelope(b"five views")
        with httpx.Client(timeout=30) as client:
            created = create(client, limited.url, body, views=5)
            sid = str(created["id"])
            for _ in range(2):
                answer = _one_shot(client, limited.url, sid, solved(client, limited.url, sid))
                assert answer.content == body
            refused = _one_shot(client, limited.url, sid, solved(client, limited.url, sid))
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert views_left(client, limited.url, created) == 3
    finally:
        limited.stop()
