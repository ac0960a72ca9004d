"""Cancelling a secret request (docs/protocol/requests.md 4.4): the requester's token closes
an open request, which then takes no fill; a request a fill holds or filled is not cancelled
(409); and a cancel racing fills is atomic on SQLite, one Redis and a Redis Cluster: either
the cancel wins and nothing is stored, or exactly one fill wins and the cancel is refused."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.device import DeviceKeys
from atopos.crypto.request_keys import fill_token_of
from atopos.server.config import ServerConfig, rate_limits
from atopos.storage.request_port import CLAIM_LEASE_SECONDS, SecretAndRequestStore
from tests.integration.test_device_binding import Device, one_line_refusal
from tests.integration.test_secret_requests import (
    _as_dead_node,
    fill_raw,
    new_request,
    open_by_cli,
    sealed_to,
)
from tests.servers import ManualClock, ServerProcess, in_process_server


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[tuple[str, str]]:
    """A server on each real backend, and its storage URL (to play a second node)."""
    storage: dict[str, str] = {}
    if request.param != "sqlite":
        fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
        storage = {
            "storage_url": request.getfixturevalue(fixture),
            "rate_limit_storage_url": "memory://",
        }
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0), **storage)
    with in_process_server(config, clock) as url:
        yield url, config.resolved_storage_url()


def _cancel(url: str, request_id: object, token: object) -> httpx.Response:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.delete(f"{url}/api/v1/requests/{request_id}", headers=headers, timeout=60)


def _status(url: str, request_id: object, token: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.get(f"{url}/api/v1/requests/{request_id}", headers=headers, timeout=60)


def test_the_requester_cancels_an_open_request(api: str) -> None:
    device, key = DeviceKeys.from_seed(os.urandom(32)), os.urandom(32)
    created = new_request(api, device, key)
    rid, token = created["id"], created["request_token"]
    # Only the request token cancels: not the fill token, not nothing, not another id.
    assert _cancel(api, rid, None).status_code == 403
    assert _cancel(api, rid, "A" * 43).status_code == 403
    assert _cancel(api, "A" * 22, token).status_code == 404
    assert _cancel(api, "short", token).status_code == 404
    assert httpx.delete(f"{api}/api/v1/requests/{rid}?x=1").status_code == 422
    assert _status(api, rid, token).json()["state"] == "open"

    assert _cancel(api, rid, token).status_code == 204
    # Gone for everyone: the status, a second cancel, and the filler.
    assert _status(api, rid, token).status_code == 404
    assert _cancel(api, rid, token).status_code == 404
    assert fill_raw(api, rid, fill_token_of(key), sealed_to(device, key)).status_code == 404


def test_a_filled_request_is_not_cancelled(api: str) -> None:
    device, key = DeviceKeys.from_seed(os.urandom(32)), os.urandom(32)
    created = new_request(api, device, key)
    rid, token = created["id"], created["request_token"]
    assert fill_raw(api, rid, fill_token_of(key), sealed_to(device, key)).status_code == 201
    refused = _cancel(api, rid, token)
    assert refused.status_code == 409
    assert refused.json()["error"] == "conflict"
    status = _status(api, rid, token).json()
    assert status["state"] == "filled"
    secret = httpx.get(
        f"{api}/api/v1/secrets/{status['secret_id']}/status",
        headers={"authorization": f"Bearer {token}"},
    )
    assert secret.json()["views_left"] == 1


def test_a_claimed_request_is_cancelled_only_once_its_claim_lapsed(
    backend: tuple[str, str], clock: ManualClock
) -> None:
    url, storage_url = backend
    device, key = DeviceKeys.from_seed(os.urandom(32)), os.urandom(32)
    created = new_request(url, device, key)
    rid, token = created["id"], created["request_token"]
    request_id = b64url_decode(str(rid))

    async def claim_only(store: SecretAndRequestStore) -> None:
        await store.claim_request(request_id, os.urandom(16), int(clock.now()))

    _as_dead_node(storage_url, claim_only)
    assert _cancel(url, rid, token).status_code == 409  # a fill holds it
    clock.advance(CLAIM_LEASE_SECONDS)  # its node died: the claim lapsed, nothing stored
    assert _cancel(url, rid, token).status_code == 204
    assert _status(url, rid, token).status_code == 404
    assert fill_raw(url, rid, fill_token_of(key), sealed_to(device, key)).status_code == 404


def _race_once(url: str, device: DeviceKeys) -> str:
    """One cancel and eight fills of one request, all let go at once; which won."""
    key = os.urandom(32)
    created = new_request(url, device, key)
    rid, token = created["id"], created["request_token"]
    envelopes = [sealed_to(device, key, b"filler %d" % n) for n in range(8)]
    start = threading.Barrier(len(envelopes) + 1)

    def attempt(body: bytes | None) -> int:
        start.wait()
        if body is None:
            return _cancel(url, rid, token).status_code
        return fill_raw(url, rid, fill_token_of(key), body).status_code

    with ThreadPoolExecutor(len(envelopes) + 1) as pool:
        cancelled, *fills = pool.map(attempt, [None, *envelopes])
    status = _status(url, rid, token)
    if cancelled == 204:
        # The cancel won: no fill was stored, and the request is gone.
        assert set(fills) == {404}, fills
        assert status.status_code == 404
        return "cancelled"
    # A fill won the claim first: exactly one secret, and the cancel was refused.
    assert cancelled == 409, cancelled
    assert fills.count(201) == 1, fills
    assert set(fills) <= {201, 404}, fills
    assert status.json()["state"] == "filled"
    return "filled"


def test_a_cancel_racing_fills_is_atomic(backend: tuple[str, str]) -> None:
    url, _ = backend
    device = DeviceKeys.from_seed(os.urandom(32))
    # Which one wins varies with the scheduling; every round must be one or the other.
    outcomes = {_race_once(url, device) for _ in range(6)}
    assert outcomes <= {"cancelled", "filled"}


def test_cancel_from_the_cli(server: ServerProcess, tmp_path: Path) -> None:
    requester = Device(tmp_path / "requester", server.url)
    requester.init()
    request_link, pickup_link = open_by_cli(requester)
    done = requester.run("secret", "request", "--cancel", pickup_link)
    assert done.returncode == 0, done.stderr.decode()
    assert "Cancelled" in done.stderr.decode()
    filler = Device(tmp_path / "filler", server.url)
    assert "cancelled" in one_line_refusal(
        filler.run("secret", "fill", request_link, stdin=b"too late"), code=3
    )
    # Cancelled twice, or with other options: one clear line each.
    assert "cancelled" in one_line_refusal(
        requester.run("secret", "request", "--cancel", pickup_link), code=3
    )
    assert "--cancel" in one_line_refusal(
        requester.run("secret", "request", "--cancel", pickup_link, "--wait"), code=2
    )
    # A filled request: refused, exit 4, and it says how to delete the secret instead.
    request_link, pickup_link = open_by_cli(requester)
    filler.ok("secret", "fill", request_link, stdin=b"in time")
    assert "secret delete" in one_line_refusal(
        requester.run("secret", "request", "--cancel", pickup_link), code=4
    )
