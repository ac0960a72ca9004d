"""A reveal in one request with a stamp (docs/protocol/access.md, "Stamp: a reveal in one
request"): the envelope for a good stamp, exactly one view per stamp, and a fresh challenge
(spending nothing) whenever the server cannot take the stamp as it is."""

from __future__ import annotations

import os
import time

import httpx

from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode
from atopos.crypto.stamps import make_stamp
from tests.api_client import access_proof, create, envelope
from tests.servers import ServerProcess


def stamped(sid: str, t: int, bits: int = 0, **extra: object) -> dict[str, object]:
    """A stamp request body for secret `sid` (made through tests/api_client.py) at time `t`,
    its work done at `bits`."""
    stamp = make_stamp(b64url_decode(sid), t, os.urandom(16))
    return {
        "stamp": stamp,
        "nonce": proof_of_work.solve(stamp.encode(), bits),
        "access_proof": access_proof(sid, stamp),
        "reveal": True,
        **extra,
    }


def views_left(client: httpx.Client, url: str, created: dict[str, str | int]) -> int:
    status = client.get(
        f"{url}/api/v1/secrets/{created['id']}/status",
        headers={"authorization": f"Bearer {created['manage_token']}"},
    )
    if status.status_code == 404:
        return 0
    assert status.status_code == 200, status.text
    views: int = status.json()["views_left"]
    return views


def test_a_stamp_reveals_the_envelope_in_one_request_and_spends_one_view(
    server: ServerProcess,
) -> None:
    body, _ = envelope(os.urandom(300))
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=2)
        sid = str(created["id"])
        answer = client.post(
            f"{server.url}/api/v1/secrets/{sid}/ticket", json=stamped(sid, int(time.time()))
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-length"] == str(len(body))
        assert answer.content == body
        assert views_left(client, server.url, created) == 1


def test_a_replayed_stamp_is_refused_and_spends_nothing(server: ServerProcess) -> None:
    body, _ = envelope(b"three views")
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=3)
        sid = str(created["id"])
        url = f"{server.url}/api/v1/secrets/{sid}/ticket"
        request = stamped(sid, int(time.time()))
        assert client.post(url, json=request).content == body
        # The same stamp again, with the same nonce and with another one.
        for nonce in (request["nonce"], 1):
            replayed = client.post(url, json={**request, "nonce": nonce})
            assert replayed.status_code == 403, replayed.text
            assert replayed.json()["error"] == "refused"
        assert views_left(client, server.url, created) == 2
