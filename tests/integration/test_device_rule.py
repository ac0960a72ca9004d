"""The device-binding rule exactly as docs/protocol/device.md sections 8 and 9 state it, one
test per statement, through the HTTP API of a real `atopos serve` (proof of work on, so the
failure count is visible in the difficulty). test_device_binding.py covers what the proof
signs (one challenge, one secret, one device) and the CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atopos.crypto import pow as proof_of_work
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import DeviceKeys
from atopos.crypto.envelope import Metadata, seal
from tests.api_client import OCTETS, access_params, access_proof, envelope, remember
from tests.servers import ServerProcess

BASE_BITS = 4


@pytest.fixture
def pow_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", tmp_path / "server.log", pow_bits=BASE_BITS)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(pow_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{pow_server.url}/api/v1", timeout=30) as c:
        yield c


@pytest.fixture
def device() -> DeviceKeys:
    return DeviceKeys.from_seed(os.urandom(32))


def _bound_envelope(device: DeviceKeys) -> bytes:
    return seal(
        b"bound",
        Metadata(kind="text", size=5),
        os.urandom(32),
        random_bytes=os.urandom,
        device=device.public,
    )


def _create(client: httpx.Client, body: bytes, **params: str | int) -> httpx.Response:
    response = client.post(
        "/secrets", params=access_params(body, **params), content=body, headers=OCTETS
    )
    if response.status_code == 201:
        remember(response.json()["id"], body)
    return response


def _create_bound(client: httpx.Client, device: DeviceKeys) -> tuple[str, str]:
    key = b64url_encode(device.public.signing_key)
    created = _create(client, _bound_envelope(device), device_key=key, views=2)
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["manage_token"]


def _challenge(client: httpx.Client, sid: str) -> dict[str, object]:
    response = client.post(f"/secrets/{sid}/challenge")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def _solved(client: httpx.Client, sid: str) -> tuple[str, int]:
    data = _challenge(client, sid)
    challenge = str(data["challenge"])
    bits = data["bits"]
    assert isinstance(bits, int)
    return challenge, proof_of_work.solve(challenge.encode(), bits)


def _ticket(client: httpx.Client, sid: str, body: dict[str, object]) -> httpx.Response:
    # With the right access proof (access.md): these tests are about the device proof.
    proof = access_proof(sid, str(body["challenge"]))
    return client.post(f"/secrets/{sid}/ticket", json={**body, "access_proof": proof})


def _proof(device: DeviceKeys, sid: str, challenge: str) -> str:
    return b64url_encode(device.sign_proof(b64url_decode(sid), challenge))


def _status(client: httpx.Client, sid: str, token: str) -> dict[str, object]:
    response = client.get(f"/secrets/{sid}/status", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


# -- Create ----------------------------------------------------------------------------------


def test_create_with_device_key_is_bound_and_without_it_unbound(
    client: httpx.Client, device: DeviceKeys
) -> None:
    sid, token = _create_bound(client, device)
    assert _challenge(client, sid)["is_bound"] is True
    assert _status(client, sid, token)["is_bound"] is True
    plain = _create(client, envelope(b"plain")[0])
    assert plain.status_code == 201
    plain_id, plain_token = plain.json()["id"], plain.json()["manage_token"]
    assert _challenge(client, plain_id)["is_bound"] is False
    assert _status(client, plain_id, plain_token)["is_bound"] is False


def test_create_refuses_a_device_key_in_padded_or_standard_base64(
    client: httpx.Client, device: DeviceKeys
) -> None:
    raw = device.public.signing_key
    padded = b64url_encode(raw) + "="
    standard = b64url_encode(raw).replace("-", "+").replace("_", "/")
    for text in {padded, standard} - {b64url_encode(raw)}:
        response = _create(client, _bound_envelope(device), device_key=text)
        assert response.status_code == 422, text
        assert response.json()["error"] == "invalid_input"


def test_create_refuses_an_envelope_that_disagrees_with_device_key(
    client: httpx.Client, device: DeviceKeys
) -> None:
    key = b64url_encode(device.public.signing_key)
    # A device-bound envelope without device_key: readers would be refused at no step.
    unbound_record = _create(client, _bound_envelope(device))
    # A device_key over an envelope any link holder can open: the binding would be a lie.
    unsealed_envelope = _create(client, envelope(b"plain")[0], device_key=key)
    for response in (unbound_record, unsealed_envelope):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_input"
        assert "device" in response.json()["message"]


# -- Ticket ----------------------------------------------------------------------------------


def test_the_challenge_and_proof_of_work_are_checked_before_the_device_proof(
    client: httpx.Client, device: DeviceKeys
) -> None:
    sid, _ = _create_bound(client, device)
    challenge, nonce = _solved(client, sid)
    proof = _proof(device, sid, challenge)
    wrong_nonce = next(
        n
        for n in range(nonce + 1, nonce + 10_000)
        if not proof_of_work.verify(challenge.encode(), n, BASE_BITS)
    )
    bad_work = _ticket(
        client, sid, {"challenge": challenge, "nonce": wrong_nonce, "device_proof": proof}
    )
    assert bad_work.status_code == 403
    assert "proof of work" in bad_work.json()["message"]
    bad_challenge = _ticket(
        client, sid, {"challenge": challenge[:-2] + "AA", "nonce": nonce, "device_proof": proof}
    )
    assert bad_challenge.status_code == 403
    assert "challenge" in bad_challenge.json()["message"]


def test_a_deleted_bound_secret_is_404_before_any_device_proof(
    client: httpx.Client, device: DeviceKeys
) -> None:
    sid, token = _create_bound(client, device)
    challenge, nonce = _solved(client, sid)
    assert (
        client.delete(f"/secrets/{sid}", headers={"authorization": f"Bearer {token}"}).status_code
        == 204
    )
    gone = _ticket(client, sid, {"challenge": challenge, "nonce": nonce})
    assert gone.status_code == 404
    assert gone.json()["error"] == "gone"


def test_a_missing_or_wrong_proof_is_403_counts_as_a_failure_and_consumes_nothing(
    client: httpx.Client, device: DeviceKeys
) -> None:
    sid, token = _create_bound(client, device)
    assert _challenge(client, sid)["bits"] == BASE_BITS
    challenge, nonce = _solved(client, sid)
    wrong = _proof(DeviceKeys.from_seed(os.urandom(32)), sid, challenge)
    for body in (
        {"challenge": challenge, "nonce": nonce},
        {"challenge": challenge, "nonce": nonce, "device_proof": None},
        {"challenge": challenge, "nonce": nonce, "device_proof": wrong},
        {"challenge": challenge, "nonce": nonce, "device_proof": wrong + "="},
    ):
        refused = _ticket(client, sid, body)
        assert refused.status_code == 403, body
        assert refused.json() == {
            "error": "refused",
            "message": "This secret is bound to a device; the device proof is missing or wrong.",
        }
        assert "ticket" not in refused.json()
    # Counted as failures: this client's next challenge is harder.
    data = _challenge(client, sid)
    assert isinstance(data["bits"], int)
    assert data["bits"] > BASE_BITS
    # Nothing consumed: both views are left, and the same challenge still buys a ticket.
    assert _status(client, sid, token)["views_left"] == 2
    issued = _ticket(
        client,
        sid,
        {"challenge": challenge, "nonce": nonce, "device_proof": _proof(device, sid, challenge)},
    )
    assert issued.status_code == 200, issued.text
    assert set(issued.json()) == {"ticket", "expires_at"}


def test_an_unbound_secret_ignores_any_schema_valid_device_proof(client: httpx.Client) -> None:
    created = _create(client, envelope(b"plain")[0], views=3)
    sid = created.json()["id"]
    challenge, nonce = _solved(client, sid)
    for proof in (None, "x", "not base64 at all!", "A" * 86, "A" * 512):
        body = {"challenge": challenge, "nonce": nonce, "device_proof": proof}
        assert _ticket(client, sid, body).status_code == 200, proof


@pytest.mark.parametrize("proof", ["", "A" * 513, 86])
def test_a_device_proof_outside_the_schema_is_422_bound_or_not(
    client: httpx.Client, device: DeviceKeys, proof: object
) -> None:
    bound, _ = _create_bound(client, device)
    unbound = _create(client, envelope(b"plain")[0]).json()["id"]
    for sid in (bound, unbound):
        challenge, nonce = _solved(client, sid)
        response = _ticket(
            client, sid, {"challenge": challenge, "nonce": nonce, "device_proof": proof}
        )
        assert response.status_code == 422, (sid, proof)
        assert response.json()["error"] == "invalid_input"
