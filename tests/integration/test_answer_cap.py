"""`max_bytes` on the steps that reveal (docs/protocol/access.md): an envelope larger than the
reader can take back (a mixnet's reply blocks) is refused 413 `answer_too_large` before the
view is spent, so a later reveal without the cap still finds it."""

from __future__ import annotations

import os

import httpx
import pytest

from atopos.client.api import SecretsApi
from atopos.client.links import ShareLink
from atopos.client.secrets import create_secret, reveal_secret
from atopos.client.transport import Transport
from atopos.errors import AnswerTooLarge, TooLarge
from tests.api_client import create, envelope, solved
from tests.servers import ServerProcess


def _views_left(client: httpx.Client, url: str, created: dict[str, str | int]) -> int:
    status = client.get(
        f"{url}/api/v1/secrets/{created['id']}/status",
        headers={"authorization": f"Bearer {created['manage_token']}"},
    )
    assert status.status_code == 200, status.text
    views: int = status.json()["views_left"]
    return views


def _ticket(client: httpx.Client, url: str, sid: str, body: dict[str, object]) -> httpx.Response:
    return client.post(f"{url}/api/v1/secrets/{sid}/ticket", json=body)


def _reveal(client: httpx.Client, url: str, sid: str, body: dict[str, object]) -> httpx.Response:
    return client.post(f"{url}/api/v1/secrets/{sid}/reveal", json=body)


def _assert_too_large(answer: httpx.Response, size: int) -> None:
    assert answer.status_code == 413, answer.text
    refusal = answer.json()
    assert refusal["error"] == "answer_too_large"
    assert refusal["size"] == size
    assert "no view was spent" in refusal["message"]


def test_the_one_shot_step_refuses_an_envelope_over_max_bytes_and_spends_nothing(
    server: ServerProcess,
) -> None:
    body, _ = envelope(os.urandom(3000))
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body)
        sid = str(created["id"])
        request = {**solved(client, server.url, sid), "reveal": True}
        refused = _ticket(client, server.url, sid, {**request, "max_bytes": len(body) - 1})
        _assert_too_large(refused, len(body))
        assert _views_left(client, server.url, created) == 1
        # The challenge is not used up by the refusal: the same request without the cap
        # (or with one the envelope fits exactly) reveals.
        revealed = _ticket(client, server.url, sid, {**request, "max_bytes": len(body)})
        assert revealed.status_code == 200, revealed.text
        assert revealed.content == body


def test_a_one_shot_reveal_without_max_bytes_after_a_refusal_succeeds(
    server: ServerProcess,
) -> None:
    body, _ = envelope(os.urandom(3000))
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body)
        sid = str(created["id"])
        request = {**solved(client, server.url, sid), "reveal": True}
        _assert_too_large(
            _ticket(client, server.url, sid, {**request, "max_bytes": 100}), len(body)
        )
        assert _views_left(client, server.url, created) == 1
        fresh = {**solved(client, server.url, sid), "reveal": True}
        revealed = _ticket(client, server.url, sid, fresh)
        assert revealed.status_code == 200, revealed.text
        assert revealed.content == body


def test_the_reveal_step_refuses_an_envelope_over_max_bytes_and_spends_nothing(
    server: ServerProcess,
) -> None:
    body, _ = envelope(os.urandom(3000))
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body, views=2)
        sid = str(created["id"])
        ticket = _ticket(client, server.url, sid, solved(client, server.url, sid))
        assert ticket.status_code == 200, ticket.text
        token = ticket.json()["ticket"]
        refused = _reveal(client, server.url, sid, {"ticket": token, "max_bytes": len(body) - 1})
        _assert_too_large(refused, len(body))
        assert _views_left(client, server.url, created) == 2
        # The ticket is still good: redeemed without the cap, it buys the view.
        revealed = _reveal(client, server.url, sid, {"ticket": token})
        assert revealed.status_code == 200, revealed.text
        assert revealed.content == body
        assert _views_left(client, server.url, created) == 1
        # And a cap the envelope fits is an ordinary reveal.
        again = _ticket(client, server.url, sid, solved(client, server.url, sid))
        fits = _reveal(
            client, server.url, sid, {"ticket": again.json()["ticket"], "max_bytes": len(body)}
        )
        assert fits.status_code == 200, fits.text
        assert fits.content == body


@pytest.mark.parametrize("max_bytes", [0, -1, 2**40 + 1, "100", 1.5, True, None])
def test_an_invalid_max_bytes_is_422_and_spends_nothing(
    server: ServerProcess, max_bytes: object
) -> None:
    body, _ = envelope(b"small")
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body)
        sid = str(created["id"])
        request = solved(client, server.url, sid)
        one_shot = _ticket(
            client, server.url, sid, {**request, "reveal": True, "max_bytes": max_bytes}
        )
        if max_bytes is None:
            # null is the field's default: no cap.
            assert one_shot.status_code == 200, one_shot.text
            return
        assert one_shot.status_code == 422, one_shot.text
        ticket = _ticket(client, server.url, sid, request)
        assert ticket.status_code == 200, ticket.text
        token = ticket.json()["ticket"]
        reveal = _reveal(client, server.url, sid, {"ticket": token, "max_bytes": max_bytes})
        assert reveal.status_code == 422, reveal.text
        assert _views_left(client, server.url, created) == 1


def test_max_bytes_without_reveal_is_422(server: ServerProcess) -> None:
    body, _ = envelope(b"small")
    with httpx.Client(timeout=30) as client:
        created = create(client, server.url, body)
        sid = str(created["id"])
        answer = _ticket(
            client, server.url, sid, {**solved(client, server.url, sid), "max_bytes": 10}
        )
        assert answer.status_code == 422, answer.text


def test_a_client_whose_transport_bounds_answers_is_refused_before_the_view_is_spent(
    server: ServerProcess,
) -> None:
    secret = os.urandom(5000)
    with SecretsApi(server.url) as api:
        created = create_secret(api, secret, expires_in=600)
    link: ShareLink = created.share_link
    bounded = Transport(server.url, max_answer_bytes=4096)
    for one_shot in (True, False):
        with SecretsApi(bounded) as api, pytest.raises(TooLarge) as refused:
            reveal_secret(api, link, lambda _: None, one_shot=one_shot)
        assert "no view was spent" in refused.value.message
        assert "4096 bytes" in refused.value.message
        # The SDK's sentence names no CLI option; the CLI writes its own (cli/exits.py).
        assert "--mixnet" not in refused.value.message
        assert isinstance(refused.value, AnswerTooLarge)
        assert refused.value.limit == 4096
        assert refused.value.size > len(secret)  # the envelope: the content and its header
    pieces: list[bytes] = []
    with SecretsApi(server.url) as api:
        reveal_secret(api, link, pieces.append)
    assert b"".join(pieces) == secret
