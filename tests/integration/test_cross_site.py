"""Requests another web site makes a visitor's browser send spend nothing: they are refused
before they count against the visitor's rate budget or raise their proof-of-work price
(server/cross_site.py), and a body of the wrong media type (all a no-cors request can send)
is refused before it counts too."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import create, envelope
from tests.servers import ManualClock, in_process_server

BASE_BITS = 4
CROSS_SITE = [
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"origin": "https://evil.example"},
    {"origin": "null"},
    # No URL at all (an unclosed IPv6 bracket): no origin of ours, and no 500.
    {"origin": "http://["},
]


def _challenge(client: httpx.Client, url: str, sid: str, **headers: str) -> httpx.Response:
    return client.post(f"{url}/api/v1/secrets/{sid}/challenge", headers=headers)


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_requests_are_refused_before_they_count(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=BASE_BITS, **rate_limits(3))
    with in_process_server(config, ManualClock(1_800_000_000)) as url, httpx.Client() as client:
        sid = str(create(client, url, envelope(b"target")[0], views=10)["id"])
        for _ in range(5):
            assert _challenge(client, url, sid, **headers).status_code == 403
            bad_ticket = client.post(
                f"{url}/api/v1/secrets/{sid}/ticket",
                json={"challenge": "forged", "nonce": 1},
                headers=headers,
            )
            assert bad_ticket.status_code == 403
        # The visitor's own budget (3 a minute) and price are untouched.
        for _ in range(3):
            answer = _challenge(client, url, sid)
            assert answer.status_code == 200
            assert answer.json()["bits"] == BASE_BITS
        assert _challenge(client, url, sid).status_code == 429


def test_a_form_or_text_body_is_refused_before_it_counts(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=BASE_BITS, **rate_limits(2))
    with in_process_server(config, ManualClock(1_800_000_000)) as url, httpx.Client() as client:
        sid = str(create(client, url, envelope(b"target")[0])["id"])
        for media_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            for route in ("ticket", "reveal"):
                answer = client.post(
                    f"{url}/api/v1/secrets/{sid}/{route}",
                    content=b'{"ticket": "x", "challenge": "x", "nonce": 1}',
                    headers={"content-type": media_type},
                )
                assert answer.status_code == 422, (media_type, route)
            created = client.post(
                f"{url}/api/v1/secrets",
                content=envelope(b"x")[0],
                headers={"content-type": media_type},
            )
            assert created.status_code == 422
        # Two tickets a minute are still there to be spent (they fail on the forged challenge).
        for _ in range(2):
            forged = client.post(
                f"{url}/api/v1/secrets/{sid}/ticket", json={"challenge": "forged", "nonce": 1}
            )
            assert forged.status_code == 403


def test_the_own_origin_and_clients_without_one_are_served(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    with in_process_server(config, ManualClock(1_800_000_000)) as url, httpx.Client() as client:
        sid = str(create(client, url, envelope(b"target")[0])["id"])
        host = url.removeprefix("http://")
        assert _challenge(client, url, sid, origin=f"http://{host}").status_code == 200
        assert _challenge(client, url, sid, **{"sec-fetch-site": "same-origin"}).status_code == 200
        assert _challenge(client, url, sid, **{"sec-fetch-site": "none"}).status_code == 200
        assert _challenge(client, url, sid).status_code == 200
