"""The secrets API against a real server on loopback (in-process, with a hand-moved clock)."""

from __future__ import annotations

import os

import httpx
import pytest

from atopos.crypto.envelope import open_envelope
from atopos.server.middleware import CONTENT_SECURITY_POLICY
from tests.api_client import (
    OCTETS,
    access_params,
    access_proof,
    create,
    envelope,
    reveal,
    ticket,
)
from tests.servers import ManualClock


@pytest.fixture
def client() -> httpx.Client:
    with httpx.Client(timeout=30) as c:
        yield c  # type: ignore[misc]


def test_full_flow_returns_the_envelope_once(api: str, client: httpx.Client) -> None:
    body, key = envelope(b"hi")
    sid = str(create(client, api, body)["id"])
    response = reveal(client, api, sid, ticket(client, api, sid))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == body
    assert open_envelope(response.content, key)[1] == b"hi"
    assert client.post(f"{api}/api/v1/secrets/{sid}/challenge").status_code == 404


def test_views_three_reveal_exactly_three_times(api: str, client: httpx.Client) -> None:
    body, _ = envelope(b"three")
    sid = str(create(client, api, body, views=3)["id"])
    for _ in range(3):
        assert reveal(client, api, sid, ticket(client, api, sid)).content == body
    assert client.post(f"{api}/api/v1/secrets/{sid}/challenge").status_code == 404


def test_expiry_is_honoured(api: str, client: httpx.Client, clock: ManualClock) -> None:
    body, _ = envelope(b"soon gone")
    created = create(client, api, body, expires_in=600)
    sid = str(created["id"])
    assert created["expires_at"] == int(clock.now()) + 600
    clock.advance(599)
    late_ticket = ticket(client, api, sid)
    clock.advance(1)
    assert client.post(f"{api}/api/v1/secrets/{sid}/challenge").status_code == 404
    assert reveal(client, api, sid, late_ticket).status_code == 404


def test_ticket_expires(api: str, client: httpx.Client, clock: ManualClock) -> None:
    body, _ = envelope(b"t")
    sid = str(create(client, api, body)["id"])
    value = ticket(client, api, sid)
    clock.advance(61)
    assert reveal(client, api, sid, value).status_code == 403
    assert reveal(client, api, sid, ticket(client, api, sid)).status_code == 200


def test_replayed_ticket_is_refused(api: str, client: httpx.Client) -> None:
    body, _ = envelope(b"r")
    sid = str(create(client, api, body, views=5)["id"])
    value = ticket(client, api, sid)
    assert reveal(client, api, sid, value).status_code == 200
    replay = reveal(client, api, sid, value)
    assert replay.status_code == 403
    assert replay.json()["error"] == "refused"


def test_replay_after_burn_is_still_refused(api: str, client: httpx.Client) -> None:
    body, _ = envelope(b"r")
    sid = str(create(client, api, body)["id"])
    value = ticket(client, api, sid)
    assert reveal(client, api, sid, value).status_code == 200
    # The view that burned it records no ticket id (nothing is left to buy): gone.
    replayed = reveal(client, api, sid, value)
    assert replayed.status_code == 404
    assert replayed.content != body


def test_replay_before_the_last_view_is_refused_and_spends_nothing(
    api: str, client: httpx.Client
) -> None:
    body, _ = envelope(b"r")
    sid = str(create(client, api, body, views=2)["id"])
    value = ticket(client, api, sid)
    assert reveal(client, api, sid, value).status_code == 200
    assert reveal(client, api, sid, value).status_code == 403
    # The replay took nothing: the second view is still there for a new ticket.
    assert reveal(client, api, sid, ticket(client, api, sid)).content == body


def test_one_challenge_buys_one_view(api: str, client: httpx.Client) -> None:
    body, _ = envelope(b"c")
    sid = str(create(client, api, body, views=5)["id"])
    c = client.post(f"{api}/api/v1/secrets/{sid}/challenge").json()
    solved = {
        "challenge": c["challenge"],
        "nonce": 0,
        "access_proof": access_proof(sid, c["challenge"]),
    }
    first = client.post(f"{api}/api/v1/secrets/{sid}/ticket", json=solved).json()["ticket"]
    second = client.post(f"{api}/api/v1/secrets/{sid}/ticket", json=solved).json()["ticket"]
    assert reveal(client, api, sid, first).status_code == 200
    assert reveal(client, api, sid, second).status_code == 403


def test_ticket_for_one_secret_fails_on_another(api: str, client: httpx.Client) -> None:
    body, _ = envelope(b"a")
    first = str(create(client, api, body)["id"])
    second = str(create(client, api, body)["id"])
    assert reveal(client, api, second, ticket(client, api, first)).status_code == 403


def test_status_and_delete_need_the_manage_token(api: str, client: httpx.Client) -> None:
    body, _ = envelope(b"m")
    created = create(client, api, body, views=2, kind="text")
    sid, token = created["id"], created["manage_token"]
    url = f"{api}/api/v1/secrets/{sid}"
    assert client.get(f"{url}/status").status_code == 403
    wrong = {"authorization": "Bearer " + "A" * 43}
    assert client.get(f"{url}/status", headers=wrong).status_code == 403
    auth = {"authorization": f"Bearer {token}"}
    status = client.get(f"{url}/status", headers=auth).json()
    assert status["views_left"] == 2
    assert status["kind"] == "text"
    assert status["size"] == len(body)
    assert status["is_bound"] is False
    reveal(client, api, str(sid), ticket(client, api, str(sid)))
    assert client.get(f"{url}/status", headers=auth).json()["views_left"] == 1
    assert client.delete(url, headers=wrong).status_code == 403
    assert client.delete(url, headers=auth).status_code == 204
    assert client.get(f"{url}/status", headers=auth).status_code == 404
    assert client.delete(url, headers=auth).status_code == 404


# Any valid access key: the requests below must fail for their own reason, not for lacking one.
ANY_ACCESS_KEY = access_params(b"")["access_key"]
BAD_REQUESTS = [
    # (description, method, path, kwargs, expected status)
    ("unknown id", "POST", "/api/v1/secrets/AAAAAAAAAAAAAAAAAAAAAA/challenge", {}, 404),
    ("malformed id", "POST", "/api/v1/secrets/not-an-id/challenge", {}, 404),
    ("malformed JSON", "POST", "/api/v1/secrets/{sid}/ticket", {"content": b"{nope"}, 422),
    ("JSON of wrong shape", "POST", "/api/v1/secrets/{sid}/ticket", {"json": {"x": 1}}, 422),
    ("extra field", "POST", "/api/v1/secrets/{sid}/reveal", {"json": {"ticket": "a", "y": 1}}, 422),
    (
        "nonce as string",
        "POST",
        "/api/v1/secrets/{sid}/ticket",
        {"json": {"challenge": "x", "nonce": "1"}},
        422,
    ),
    (
        "nonce negative",
        "POST",
        "/api/v1/secrets/{sid}/ticket",
        {"json": {"challenge": "x", "nonce": -1}},
        422,
    ),
    (
        "nonce 2**64",
        "POST",
        "/api/v1/secrets/{sid}/ticket",
        {"json": {"challenge": "x", "nonce": 2**64}},
        422,
    ),
    (
        "forged challenge",
        "POST",
        "/api/v1/secrets/{sid}/ticket",
        {"json": {"challenge": "A" * 68, "nonce": 1}},
        403,
    ),
    ("bad ticket", "POST", "/api/v1/secrets/{sid}/reveal", {"json": {"ticket": "B" * 78}}, 403),
    (
        "oversized JSON",
        "POST",
        "/api/v1/secrets/{sid}/reveal",
        {"json": {"ticket": "x" * 10_000}},
        413,
    ),
    (
        "garbage envelope",
        "POST",
        f"/api/v1/secrets?access_key={ANY_ACCESS_KEY}",
        {"content": b"\0" * 4096, "headers": OCTETS},
        422,
    ),
    (
        "empty envelope",
        "POST",
        f"/api/v1/secrets?access_key={ANY_ACCESS_KEY}",
        {"content": b"", "headers": OCTETS},
        422,
    ),
    ("wrong content type", "POST", "/api/v1/secrets", {"json": {"a": 1}}, 422),
    ("views 0", "POST", "/api/v1/secrets?views=0", {"content": b"x", "headers": OCTETS}, 422),
    ("views huge", "POST", "/api/v1/secrets?views=101", {"content": b"x", "headers": OCTETS}, 422),
    (
        "expiry too short",
        "POST",
        "/api/v1/secrets?expires_in=5",
        {"content": b"x", "headers": OCTETS},
        422,
    ),
    (
        "unknown parameter",
        "POST",
        "/api/v1/secrets?color=red",
        {"content": b"x", "headers": OCTETS},
        422,
    ),
    ("wrong method", "GET", "/api/v1/secrets/{sid}/reveal", {}, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "expected"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_input_gets_a_clear_4xx(
    api: str,
    client: httpx.Client,
    method: str,
    path: str,
    kwargs: dict[str, object],
    expected: int,
) -> None:
    body, _ = envelope(b"x")
    sid = str(create(client, api, body)["id"])
    response = client.request(method, api + path.format(sid=sid), **kwargs)  # type: ignore[arg-type]
    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == {"error", "message"}
    assert "Traceback" not in response.text
    # The secret is untouched by every bad request.
    assert reveal(client, api, sid, ticket(client, api, sid)).status_code == 200


def test_declared_oversized_body_is_refused_before_reading(api: str) -> None:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(api)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/secrets?access_key={ANY_ACCESS_KEY} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Content-Type: application/octet-stream\r\nContent-Length: 1099511627776\r\n\r\n"
        )
        # No body is sent: the answer must come from the header alone.
        head = sock.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 413")


def test_streamed_oversized_body_is_cut_off(tmp_path: object, clock: ManualClock) -> None:
    from atopos.server.config import ServerConfig, rate_limits
    from tests.servers import in_process_server

    config = ServerConfig(
        data_dir=tmp_path / "data",  # type: ignore[operator]
        pow_bits=0,
        max_content_bytes=64 * 1024,
        **rate_limits(0),
    )

    big, _ = envelope(os.urandom(1024 * 1024))

    def chunks() -> object:
        for start in range(0, len(big), 16 * 1024):
            yield big[start : start + 16 * 1024]

    with in_process_server(config, clock) as url, httpx.Client() as client:
        # No Content-Length: the limit must hold while reading.
        response = client.post(
            f"{url}/api/v1/secrets",
            params=access_params(big),
            content=chunks(),  # type: ignore[arg-type]
            headers=OCTETS,
        )
        assert response.status_code == 413


ROUTES = [
    ("POST", "/api/v1/secrets"),
    ("POST", "/api/v1/secrets/{sid}/challenge"),
    ("POST", "/api/v1/secrets/{sid}/ticket"),
    ("POST", "/api/v1/secrets/{sid}/reveal"),
    ("GET", "/api/v1/secrets/{sid}/status"),
    ("GET", "/api/v1/secrets/{sid}/receipts"),
    ("DELETE", "/api/v1/secrets/{sid}"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/page"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_response_carries_the_security_headers(
    api: str, client: httpx.Client, method: str, path: str
) -> None:
    body, _ = envelope(b"h")
    sid = str(create(client, api, body)["id"])
    response = client.request(method, api + path.format(sid=sid))
    headers = response.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def test_healthz_and_openapi(api: str, client: httpx.Client) -> None:
    assert client.get(f"{api}/healthz").json() == {"status": "ok", "storage": "up"}
    document = client.get(f"{api}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/secrets/{id}/reveal" in document["paths"]


def test_challenge_says_whether_a_passphrase_is_needed(api: str, client: httpx.Client) -> None:
    from atopos.crypto.envelope import Argon2Params, Metadata, seal

    key = os.urandom(32)
    weak = Argon2Params(memory_kib=1024, iterations=1, lanes=1)
    locked = seal(
        b"x", Metadata("text", 1), key, random_bytes=os.urandom, passphrase="pw", argon2=weak
    )
    plain, _ = envelope(b"x")
    for body, expected in ((locked, True), (plain, False)):
        sid = str(create(client, api, body)["id"])
        challenge = client.post(f"{api}/api/v1/secrets/{sid}/challenge").json()
        assert challenge["has_passphrase"] is expected
        assert challenge["is_bound"] is False


def test_device_key_must_match_the_envelope(api: str, client: httpx.Client) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from atopos.crypto.base64url import b64url_encode

    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    body, _ = envelope(b"not bound")
    response = client.post(
        f"{api}/api/v1/secrets",
        params=access_params(body, device_key=b64url_encode(public)),
        content=body,
        headers=OCTETS,
    )
    assert response.status_code == 422
