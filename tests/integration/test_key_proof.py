"""The key-knowledge proof through the API, on SQLite and on Redis (docs/protocol/access.md):
a wrong link key or passphrase is refused at the ticket step and spends no view, an id alone
cannot burn a secret, new creates must carry an access key, and secrets stored before the
proof existed (no access key) keep working."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atopos.client.api import SecretsApi
from atopos.client.links import ShareLink
from atopos.client.secrets import create_secret, reveal_secret
from atopos.crypto import pow as proof_of_work
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.envelope import Argon2Params, Metadata, parse_header, seal
from atopos.errors import WrongKey
from atopos.server.config import ServerConfig, rate_limits
from tests.api_client import OCTETS, access_params, create, envelope
from tests.servers import ManualClock, in_process_server

NOW = 1_800_000_000
BASE_BITS = 2
WEAK = Argon2Params(memory_kib=256, iterations=1, lanes=1)


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    storage: dict[str, str] = {}
    if request.param == "redis":
        storage = {
            "storage_url": request.getfixturevalue("redis_url"),
            "rate_limit_storage_url": request.getfixturevalue("redis_ephemeral_url"),
        }
    config = ServerConfig(
        data_dir=tmp_path / "data", pow_bits=BASE_BITS, **storage, **rate_limits(0)
    )
    with in_process_server(config, ManualClock(NOW)) as server_url:
        yield server_url


def _views_left(client: httpx.Client, url: str, created: dict[str, str | int]) -> int:
    auth = {"authorization": f"Bearer {created['manage_token']}"}
    response = client.get(f"{url}/api/v1/secrets/{created['id']}/status", headers=auth)
    assert response.status_code == 200, response.text
    views: int = response.json()["views_left"]
    return views


def _ticket_with(
    client: httpx.Client, url: str, sid: str, signer: AccessSigner | None
) -> httpx.Response:
    challenge = client.post(f"{url}/api/v1/secrets/{sid}/challenge").json()
    body: dict[str, object] = {
        "challenge": challenge["challenge"],
        "nonce": proof_of_work.solve(challenge["challenge"].encode(), challenge["bits"]),
    }
    if signer is not None:
        proof = signer.sign_proof(b64url_decode(sid), challenge["challenge"])
        body["access_proof"] = b64url_encode(proof)
    return client.post(f"{url}/api/v1/secrets/{sid}/ticket", json=body)


def _bits(client: httpx.Client, url: str, sid: str) -> int:
    bits: int = client.post(f"{url}/api/v1/secrets/{sid}/challenge").json()["bits"]
    return bits


def test_a_wrong_link_key_is_refused_at_the_ticket_and_spends_nothing(url: str) -> None:
    with httpx.Client(timeout=30) as client:
        body, key = envelope(b"the secret")
        created = create(client, url, body, views=1)
        sid = str(created["id"])
        typo = bytes([key[0] ^ 1]) + key[1:]
        before = _bits(client, url, sid)
        refused = _ticket_with(client, url, sid, AccessSigner(typo))
        assert refused.status_code == 403
        assert refused.json()["error"] == "wrong_key"
        assert "key in the link or the passphrase is wrong" in refused.json()["message"]
        # A failure was recorded: the next challenge costs more.
        assert _bits(client, url, sid) > before
        assert _views_left(client, url, created) == 1
        # The right key still gets its view.
        ticket = _ticket_with(client, url, sid, AccessSigner(key))
        assert ticket.status_code == 200, ticket.text
        reveal = client.post(
            f"{url}/api/v1/secrets/{sid}/reveal", json={"ticket": ticket.json()["ticket"]}
        )
        assert reveal.content == body


def test_an_id_alone_cannot_burn_a_secret(url: str) -> None:
    with httpx.Client(timeout=30) as client:
        body, _ = envelope(b"x")
        created = create(client, url, body, views=2)
        sid = str(created["id"])
        for _ in range(3):
            assert _ticket_with(client, url, sid, None).status_code == 403
            assert _ticket_with(client, url, sid, AccessSigner(os.urandom(32))).status_code == 403
        assert _views_left(client, url, created) == 2


def test_a_wrong_passphrase_spends_no_view_and_the_right_one_then_reveals(url: str) -> None:
    with SecretsApi(url) as api, httpx.Client(timeout=30) as client:
        made = create_secret(api, b"locked", expires_in=600, passphrase="right", argon2=WEAK)
        link = made.share_link
        created: dict[str, str | int] = {
            "id": link.secret_id,
            "manage_token": made.manage_link.manage_token,
        }
        with pytest.raises(WrongKey):
            reveal_secret(api, link, lambda data: None, passphrase="wrong")
        assert _views_left(client, url, created) == 1
        out = bytearray()
        reveal_secret(api, link, out.extend, passphrase="right")
        assert bytes(out) == b"locked"


def test_a_typo_in_the_link_spends_no_view_through_the_sdk(url: str) -> None:
    with SecretsApi(url) as api:
        made = create_secret(api, b"plain", expires_in=600, views=1)
        link = made.share_link
        typo = ShareLink(
            link.server, link.secret_id, bytes([link.link_key[0] ^ 4]) + link.link_key[1:]
        )
        with pytest.raises(WrongKey):
            reveal_secret(api, typo, lambda data: None)
        out = bytearray()
        reveal_secret(api, link, out.extend)
        assert bytes(out) == b"plain"


def test_the_challenge_carries_the_kdf_fields_of_the_header(url: str) -> None:
    key = os.urandom(32)
    body = seal(
        b"x", Metadata("text", 1), key, random_bytes=os.urandom, passphrase="pw", argon2=WEAK
    )
    header = parse_header(body)
    assert header is not None
    assert header.argon2_salt is not None
    with httpx.Client(timeout=30) as client:
        sid = str(create(client, url, body)["id"])
        challenge = client.post(f"{url}/api/v1/secrets/{sid}/challenge").json()
        assert challenge["has_access_key"] is True
        assert challenge["has_passphrase"] is True
        assert challenge["argon2"] == {
            "memory_kib": 256,
            "iterations": 1,
            "lanes": 1,
            "salt": b64url_encode(header.argon2_salt),
        }
        plain = str(create(client, url, envelope(b"y")[0])["id"])
        challenge = client.post(f"{url}/api/v1/secrets/{plain}/challenge").json()
        assert (challenge["has_access_key"], challenge["argon2"]) == (True, None)


def test_a_create_without_an_access_key_is_refused_clearly(url: str) -> None:
    body, _ = envelope(b"old client")
    with httpx.Client(timeout=30) as client:
        response = client.post(f"{url}/api/v1/secrets", content=body, headers=OCTETS)
        assert response.status_code == 422
        assert "access_key is missing" in response.json()["message"]
        assert "upgrade" in response.json()["message"]
        for bad in ("", "A" * 43, b64url_encode(bytes(32)), "not base64!"):
            response = client.post(
                f"{url}/api/v1/secrets", params={"access_key": bad}, content=body, headers=OCTETS
            )
            assert response.status_code == 422
            assert "access_key must be an Ed25519 public key" in response.json()["message"]
        response = client.post(
            f"{url}/api/v1/secrets", params=access_params(body), content=body, headers=OCTETS
        )
        assert response.status_code == 201


def test_a_secret_stored_before_the_proof_still_reveals(tmp_path: Path) -> None:
    """A database written by the previous version (schema 2, no access key) is migrated and
    its secret reveals through the SDK, which sends no proof because none is asked for."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / "atopos.db"
    key = os.urandom(32)
    body = seal(b"from before", Metadata("text", 11), key, random_bytes=os.urandom)
    sid = os.urandom(16)
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE secrets (id BLOB PRIMARY KEY NOT NULL, manage_hash BLOB NOT NULL,"
        " kind TEXT NOT NULL, size INTEGER NOT NULL, views_left INTEGER NOT NULL,"
        " created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, device_key BLOB,"
        " body BLOB, has_passphrase INTEGER NOT NULL DEFAULT 0);"
    )
    conn.execute(
        "INSERT INTO secrets VALUES (?, ?, 'text', ?, 1, ?, ?, NULL, ?, 0)",
        (sid, bytes(32), len(body), NOW, NOW + 600, body),
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    config = ServerConfig(data_dir=data, pow_bits=BASE_BITS, **rate_limits(0))
    with in_process_server(config, ManualClock(NOW)) as url, SecretsApi(url) as api:
        with httpx.Client(timeout=30) as client:
            challenge = client.post(f"{url}/api/v1/secrets/{b64url_encode(sid)}/challenge")
            assert challenge.json()["has_access_key"] is False
        out = bytearray()
        reveal_secret(api, ShareLink(url, b64url_encode(sid), key), out.extend)
        assert bytes(out) == b"from before"


def test_a_typed_passphrase_is_asked_again_without_spending_a_view(url: str) -> None:
    with SecretsApi(url) as api, httpx.Client(timeout=30) as client:
        made = create_secret(
            api, b"asked", expires_in=600, views=2, passphrase="right", argon2=WEAK
        )
        created: dict[str, str | int] = {
            "id": made.share_link.secret_id,
            "manage_token": made.manage_link.manage_token,
        }
        answers = iter(["wrong", "still wrong", "right"])
        attempts: list[int] = []

        def ask(attempt: int) -> str:
            attempts.append(attempt)
            return next(answers)

        out = bytearray()
        reveal_secret(api, made.share_link, out.extend, ask_passphrase=ask)
        assert bytes(out) == b"asked"
        assert attempts == [0, 1, 2]
        assert _views_left(client, url, created) == 1
        # Out of tries: refused, nothing spent.
        with pytest.raises(WrongKey):
            reveal_secret(api, made.share_link, lambda data: None, ask_passphrase=lambda n: "no")
        assert _views_left(client, url, created) == 1
