"""Raw HTTP steps of the secrets API for tests (the SDK is tested separately).

Every new secret needs its access key and every ticket its access proof
(docs/protocol/access.md). So that raw tests need not carry link keys around, `envelope()`
remembers the link key of each envelope it makes, `access_params(body)` adds the matching
`access_key` to a create's query, `create()` remembers which secret id it went to, and
`ticket()` / `access_proof()` sign with it. A body not made here gets a fresh valid key.
"""

from __future__ import annotations

import os

import httpx

from atopos.crypto import pow as proof_of_work
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.envelope import Metadata, seal

OCTETS = {"content-type": "application/octet-stream"}
_LINK_KEYS: dict[bytes, bytes] = {}  # envelope bytes -> link key
_SIGNERS: dict[str, AccessSigner] = {}  # secret id -> its access key


def envelope(content: bytes, key: bytes | None = None) -> tuple[bytes, bytes]:
    key = key or os.urandom(32)
    body = seal(content, Metadata(kind="text", size=len(content)), key, random_bytes=os.urandom)
    _LINK_KEYS[body] = key
    return body, key


def signer_for(body: bytes) -> AccessSigner:
    """The access key of `body`'s link key (for a body not made by envelope(), a random
    key, the same one every time it is asked for)."""
    return AccessSigner(_LINK_KEYS.setdefault(body, os.urandom(32)))


def access_params(body: bytes, **params: int | str) -> dict[str, int | str]:
    """Create query parameters `params` plus the access key that belongs to `body`."""
    return {**params, "access_key": b64url_encode(signer_for(body).public_key)}


def remember(sid: str, body: bytes) -> None:
    """Note that `sid` was created from `body` (raw creates), for access_proof()."""
    _SIGNERS[sid] = signer_for(body)


def access_proof(sid: str, challenge: str) -> str:
    """The access proof of secret `sid` (created through this module) over `challenge`."""
    signer = _SIGNERS.get(sid) or AccessSigner(os.urandom(32))
    return b64url_encode(signer.sign_proof(b64url_decode(sid), challenge))


def stamp_proof(sid: str, stamp: str) -> str:
    """The access proof of secret `sid` (created through this module) over a stamp: the
    stamp label (docs/protocol/access.md, "Stamp")."""
    signer = _SIGNERS.get(sid) or AccessSigner(os.urandom(32))
    return b64url_encode(signer.sign_stamp_proof(b64url_decode(sid), stamp))


def create(
    client: httpx.Client, url: str, body: bytes, **params: int | str
) -> dict[str, str | int]:
    response = client.post(
        f"{url}/api/v1/secrets", params=access_params(body, **params), content=body, headers=OCTETS
    )
    assert response.status_code == 201, response.text
    data: dict[str, str | int] = response.json()
    remember(str(data["id"]), body)
    return data


def solved(client: httpx.Client, url: str, sid: str) -> dict[str, str | int]:
    """A ticket request body: a fresh challenge, its nonce and the access proof."""
    challenge = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
    assert challenge.status_code == 200, challenge.text
    c = challenge.json()
    nonce = proof_of_work.solve(c["challenge"].encode(), c["bits"])
    return {
        "challenge": c["challenge"],
        "nonce": nonce,
        "access_proof": access_proof(sid, c["challenge"]),
    }


def ticket(client: httpx.Client, url: str, sid: str) -> str:
    response = client.post(f"{url}/api/v1/secrets/{sid}/ticket", json=solved(client, url, sid))
    assert response.status_code == 200, response.text
    value: str = response.json()["ticket"]
    return value


def reveal(client: httpx.Client, url: str, sid: str, ticket_value: str) -> httpx.Response:
    return client.post(f"{url}/api/v1/secrets/{sid}/reveal", json={"ticket": ticket_value})


def views_left(client: httpx.Client, url: str, created: dict[str, str | int]) -> int:
    """The views left of a secret `create()` made (its manage token asks); 0 once gone."""
    status = client.get(
        f"{url}/api/v1/secrets/{created['id']}/status",
        headers={"authorization": f"Bearer {created['manage_token']}"},
    )
    if status.status_code == 404:
        return 0
    assert status.status_code == 200, status.text
    views: int = status.json()["views_left"]
    return views
