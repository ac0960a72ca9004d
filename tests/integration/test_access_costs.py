"""What scraping costs: failures raise the proof-of-work difficulty for the identifier that
failed (one bit per doubling, at most 8 more), and only for it; rate limits answer 429 with
Retry-After per route class and identifier (docs/protocol/access.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_encode
from atopos.server.config import ServerConfig, rate_limits
from atopos.storage.sqlite import SqliteSecretStore
from tests.api_client import access_proof, create, envelope
from tests.servers import ManualClock, in_process_server

BASE_BITS = 4


def _bits(client: httpx.Client, url: str, sid: str) -> int:
    response = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
    assert response.status_code == 200, response.text
    bits: int = response.json()["bits"]
    return bits


def test_failures_raise_the_difficulty_for_that_client_only(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=BASE_BITS, **rate_limits(0))
    with (
        in_process_server(config, ManualClock(1_800_000_000)) as url,
        httpx.Client(timeout=30) as scraper,
        httpx.Client(
            timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")
        ) as bystander,
    ):
        sid = str(create(scraper, url, envelope(b"target")[0], views=100)["id"])
        assert _bits(scraper, url, sid) == BASE_BITS
        guesses = [b64url_encode(n.to_bytes(16, "big")) for n in range(300)]
        expected = {1: 1, 3: 2, 7: 3, 15: 4, 255: 8, 300: 8}
        for failed, guess in enumerate(guesses, start=1):
            assert scraper.post(f"{url}/api/v1/secrets/{guess}/challenge").status_code == 404
            if failed in expected:
                assert _bits(scraper, url, sid) == BASE_BITS + expected[failed], failed
        # Forged tickets count as failures too, and never lift the cap.
        forged = scraper.post(f"{url}/api/v1/secrets/{sid}/reveal", json={"ticket": "A" * 78})
        assert forged.status_code == 403
        assert _bits(scraper, url, sid) == BASE_BITS + 8
        # Another address is another identifier: its price is the base price.
        assert _bits(bystander, url, sid) == BASE_BITS


def test_a_harder_challenge_lives_longer_and_still_buys_one_view(tmp_path: Path) -> None:
    """The lifetime doubles with each extra bit (a slow browser is not priced out), and the
    store remembers a redeemed ticket id for as long as its challenge can mint tickets."""
    config = ServerConfig(
        data_dir=tmp_path / "data", pow_bits=BASE_BITS, sweep_interval=3600.0, **rate_limits(0)
    )
    clock = ManualClock(1_800_000_000)
    store = SqliteSecretStore(tmp_path / "data" / "atopos.db")
    with in_process_server(config, clock, store) as url, httpx.Client(timeout=30) as client:
        api = f"{url}/api/v1/secrets"
        created = create(client, url, envelope(b"target")[0], views=3)
        sid, manage = str(created["id"]), {"authorization": f"Bearer {created['manage_token']}"}
        base = client.post(f"{api}/{sid}/challenge").json()
        assert base["expires_at"] - clock.now() == config.challenge_ttl
        for n in range(7):  # 7 failures: 3 extra bits
            guess = b64url_encode(n.to_bytes(16, "big"))
            assert client.post(f"{api}/{guess}/challenge").status_code == 404
        issued = client.post(f"{api}/{sid}/challenge").json()
        assert issued["bits"] == BASE_BITS + 3
        assert issued["expires_at"] - clock.now() == config.challenge_ttl * 8
        nonce = proof_of_work.solve(issued["challenge"].encode(), issued["bits"])
        trade = {
            "challenge": issued["challenge"],
            "nonce": nonce,
            "access_proof": access_proof(sid, issued["challenge"]),
        }

        # Past the base lifetime, the harder challenge is still good.
        clock.advance(config.challenge_ttl * 2)
        ticket = client.post(f"{api}/{sid}/ticket", json=trade).json()["ticket"]
        assert client.post(f"{api}/{sid}/reveal", json={"ticket": ticket}).status_code == 200

        # Later still, the same challenge mints another ticket (same ticket id): refused,
        # although its first ticket expired long ago and the store was swept since.
        clock.advance(config.challenge_ttl * 4)
        again = client.post(f"{api}/{sid}/ticket", json=trade)
        asyncio.run(store.sweep(int(clock.now())))
        assert again.status_code == 200, again.text
        replay = client.post(f"{api}/{sid}/reveal", json={"ticket": again.json()["ticket"]})
        assert replay.status_code == 403, "one proof of work bought a second view"
        status = client.get(f"{api}/{sid}/status", headers=manage)
        assert status.json()["views_left"] == 2  # one proof of work, one view

        # And once its lifetime is over, the challenge buys nothing more.
        clock.advance(config.challenge_ttl * 2)
        assert client.post(f"{api}/{sid}/ticket", json=trade).status_code == 403


def test_each_route_class_is_rate_limited_per_client_with_retry_after(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(3))
    with (
        in_process_server(config, ManualClock(1_800_000_000)) as url,
        httpx.Client(timeout=30) as client,
        httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other,
    ):
        sid = str(create(client, url, envelope(b"limited")[0])["id"])
        statuses = [client.post(f"{url}/api/v1/secrets/{sid}/challenge") for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert int(statuses[-1].headers["retry-after"]) >= 1
        # Another route class keeps its own count; another client its own.
        manage = client.get(f"{url}/api/v1/secrets/{sid}/status")
        assert manage.status_code == 403
        assert other.post(f"{url}/api/v1/secrets/{sid}/challenge").status_code == 200
