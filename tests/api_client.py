"""Raw HTTP steps of the secrets API for tests (the SDK is tested separately)."""

from __future__ import annotations

import os

import httpx

from atopos.crypto import pow as proof_of_work
from atopos.crypto.envelope import Metadata, seal

OCTETS = {"content-type": "application/octet-stream"}


def envelope(content: bytes, key: bytes | None = None) -> tuple[bytes, bytes]:
    key = key or os.urandom(32)
    return seal(
        content, Metadata(kind="text", size=len(content)), key, random_bytes=os.urandom
    ), key


def create(
    client: httpx.Client, url: str, body: bytes, **params: int | str
) -> dict[str, str | int]:
    response = client.post(f"{url}/api/v1/secrets", params=params, content=body, headers=OCTETS)
    assert response.status_code == 201, response.text
    data: dict[str, str | int] = response.json()
    return data


def ticket(client: httpx.Client, url: str, sid: str) -> str:
    challenge = client.post(f"{url}/api/v1/secrets/{sid}/challenge")
    assert challenge.status_code == 200, challenge.text
    c = challenge.json()
    nonce = proof_of_work.solve(c["challenge"].encode(), c["bits"])
    response = client.post(
        f"{url}/api/v1/secrets/{sid}/ticket", json={"challenge": c["challenge"], "nonce": nonce}
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["ticket"]
    return value


def reveal(client: httpx.Client, url: str, sid: str, ticket_value: str) -> httpx.Response:
    return client.post(f"{url}/api/v1/secrets/{sid}/reveal", json={"ticket": ticket_value})
