"""Secret requests end to end (docs/protocol/requests.md): a requester's CLI opens a request
bound to its device, someone fills it, and only the requester's device opens it; plus every
refusal of the HTTP routes, and one fill only under concurrency, against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from atopos.client.api import SecretsApi
from atopos.client.links import parse_share_link
from atopos.client.request_links import parse_pickup_link, parse_request_link
from atopos.client.secret_requests import fill_request, share_link_of
from atopos.client.secrets import reveal_secret
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.device import DeviceKeys
from atopos.crypto.envelope import Metadata, seal
from atopos.crypto.request_keys import fill_token_of
from atopos.errors import Gone, Refused
from atopos.server.config import ServerConfig, rate_limits
from atopos.storage.factory import open_store
from atopos.storage.port import NewSecret
from atopos.storage.request_port import CLAIM_LEASE_SECONDS, SecretAndRequestStore
from tests.integration.test_device_binding import Device, one_line_refusal
from tests.servers import ATOPOS, ManualClock, ServerProcess, in_process_server

SECRET = b"the wifi password is correct-horse\n"
OCTETS = {"content-type": "application/octet-stream"}


def open_by_cli(device: Device, *args: str) -> tuple[str, str]:
    record = json.loads(device.ok("secret", "request", "--json", *args))
    return record["request_link"], record["pickup_link"]


def fill(server_url: str, request_link: str, content: bytes = SECRET) -> None:
    with SecretsApi(server_url) as api:
        fill_request(api, parse_request_link(request_link), content)


@pytest.fixture
def people(tmp_path: Path, server: ServerProcess) -> tuple[Device, Device]:
    return Device(tmp_path / "requester", server.url), Device(tmp_path / "other", server.url)


def test_a_filled_request_opens_only_on_the_requesters_device(
    server: ServerProcess, people: tuple[Device, Device]
) -> None:
    requester, other = people
    code = requester.init()
    other.init()
    request_link, pickup_link = open_by_cli(requester)
    assert parse_request_link(request_link).device.code == code
    fill(server.url, request_link)

    # The pickup link (and the share link of the filled secret) on another device: refused
    # at the ticket step, nothing spent.
    assert "bound to another device" in one_line_refusal(other.run("secret", "reveal", pickup_link))
    pickup = parse_pickup_link(pickup_link)
    with SecretsApi(server.url) as api:
        status = api.request_status(pickup.request_id, pickup.request_token)
    assert status.state == "filled"
    assert status.secret_id is not None
    share = str(share_link_of(pickup, status.secret_id))
    one_line_refusal(other.run("secret", "reveal", share))
    # A machine with no device at all: the same.
    nobody = Device(requester.home.parent / "nobody", server.url)
    one_line_refusal(nobody.run("secret", "reveal", share))

    assert requester.ok("secret", "reveal", pickup_link).encode() == SECRET
    # One view: it is gone now, for everyone.
    one_line_refusal(requester.run("secret", "reveal", pickup_link), code=3)
    # And the request cannot be filled again.
    with pytest.raises(Gone):
        fill(server.url, request_link, b"a second try")


def test_the_link_alone_opens_nothing(server: ServerProcess, people: tuple[Device, Device]) -> None:
    """Whoever holds every link (request, pickup, share) but not the device gets nothing:
    the server refuses the ticket without the device proof, and the envelope itself does
    not open without the device's X25519 key."""
    requester, _ = people
    requester.init()
    request_link, pickup_link = open_by_cli(requester)
    fill(server.url, request_link)
    pickup = parse_pickup_link(pickup_link)
    with SecretsApi(server.url) as api:
        status = api.request_status(pickup.request_id, pickup.request_token)
        assert status.secret_id is not None
        share = share_link_of(pickup, status.secret_id)
        received: list[bytes] = []
        with pytest.raises(Refused):
            reveal_secret(api, share, received.append, device=lambda: None)
        thief = DeviceKeys.from_seed(os.urandom(32))
        with pytest.raises(Refused):
            reveal_secret(api, share, received.append, device=lambda: thief)
        assert received == []
        assert api.status(share.secret_id, pickup.request_token).views_left == 1


def test_request_wait_returns_with_the_secret(
    server: ServerProcess, people: tuple[Device, Device]
) -> None:
    requester, _ = people
    requester.init()
    env = {
        **os.environ,
        "ATOPOS_HOME": str(requester.home),
        "ATOPOS_KEYRING": "off",
        "ATOPOS_SERVER": server.url,
    }
    with subprocess.Popen(
        [ATOPOS, "secret", "request", "--wait", "--expires", "10m"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as waiting:
        assert waiting.stdout is not None
        assert waiting.stderr is not None
        request_link = waiting.stdout.readline().decode().strip()
        # Filled only once the command says it waits, so it is seen arriving.
        while b"Waiting for the secret" not in (line := waiting.stderr.readline()):
            assert line, "the command ended without waiting"
        fill(server.url, request_link)
        out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err.decode()
    assert out == SECRET
    assert "The secret arrived." in err.decode()


def test_request_needs_a_device(people: tuple[Device, Device]) -> None:
    requester, _ = people
    assert "no device" in one_line_refusal(requester.run("secret", "request"), code=2)


# -- the HTTP routes ----------------------------------------------------------------------


def new_request(
    url: str, device: DeviceKeys, request_key: bytes, **extra: object
) -> dict[str, object]:
    body = {
        "device_key": b64url_encode(device.public.signing_key),
        "access_key": b64url_encode(AccessSigner(request_key).public_key),
        "fill_token": b64url_encode(fill_token_of(request_key)),
        **extra,
    }
    response = httpx.post(f"{url}/api/v1/requests", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


def sealed_to(device: DeviceKeys, request_key: bytes, content: bytes = SECRET) -> bytes:
    return seal(
        content,
        Metadata(kind="text", size=len(content)),
        request_key,
        random_bytes=os.urandom,
        device=device.public,
    )


def fill_raw(url: str, request_id: object, token: bytes, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/requests/{request_id}/fill",
        timeout=60,
        content=body,
        headers={**OCTETS, "authorization": f"Bearer {b64url_encode(token)}"},
    )


def test_every_bad_input_is_a_clear_4xx(api: str, clock: ManualClock) -> None:
    device = DeviceKeys.from_seed(os.urandom(32))
    key = os.urandom(32)
    good = {
        "device_key": b64url_encode(device.public.signing_key),
        "access_key": b64url_encode(AccessSigner(key).public_key),
        "fill_token": b64url_encode(fill_token_of(key)),
    }
    bad_bodies = [
        {**good, "device_key": "A" * 43},  # not a point
        {**good, "access_key": b64url_encode(b"\x00" * 32)},  # small order
        {**good, "fill_token": "x" * 42},
        {**good, "expires_in": 59},
        {**good, "expires_in": 10**9},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "fill_token"},
    ]
    for body in bad_bodies:
        response = httpx.post(f"{api}/api/v1/requests", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["message"]
    assert httpx.post(f"{api}/api/v1/requests", content=b"{", headers=OCTETS).status_code == 422
    response = httpx.post(f"{api}/api/v1/requests?expires_in=60", json=good)
    assert response.status_code == 422

    created = new_request(api, device, key, expires_in=120)
    rid, token = created["id"], str(created["request_token"])
    # Status: the requester's token only.
    assert httpx.get(f"{api}/api/v1/requests/{rid}").status_code == 403
    wrong = {"authorization": f"Bearer {b64url_encode(os.urandom(32))}"}
    assert httpx.get(f"{api}/api/v1/requests/{rid}", headers=wrong).status_code == 403
    mine = {"authorization": f"Bearer {token}"}
    status = httpx.get(f"{api}/api/v1/requests/{rid}", headers=mine).json()
    assert status["state"] == "open"
    assert status["secret_id"] is None
    assert httpx.get(f"{api}/api/v1/requests/{'A' * 22}", headers=mine).status_code == 404
    assert httpx.get(f"{api}/api/v1/requests/short", headers=mine).status_code == 404

    envelope = sealed_to(device, key)
    # The id alone (no or a wrong fill token) fills nothing.
    no_token = httpx.post(f"{api}/api/v1/requests/{rid}/fill", content=envelope, headers=OCTETS)
    assert no_token.status_code == 403
    assert fill_raw(api, rid, os.urandom(32), envelope).status_code == 403
    # Not sealed to a device, or with a passphrase, or not an envelope: 422.
    unbound = seal(SECRET, Metadata(kind="text", size=len(SECRET)), key, random_bytes=os.urandom)
    assert fill_raw(api, rid, fill_token_of(key), unbound).status_code == 422
    assert fill_raw(api, rid, fill_token_of(key), b"plain text" * 100).status_code == 422
    response = httpx.post(
        f"{api}/api/v1/requests/{rid}/fill?kind=poem",
        content=envelope,
        headers={**OCTETS, "authorization": f"Bearer {b64url_encode(fill_token_of(key))}"},
    )
    assert response.status_code == 422
    response = httpx.post(
        f"{api}/api/v1/requests/{rid}/fill",
        content=envelope,
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 422
    # Failed fills left the request open; a good one fills it, once.
    assert fill_raw(api, rid, fill_token_of(key), envelope).status_code == 201
    assert fill_raw(api, rid, fill_token_of(key), envelope).status_code == 404
    status = httpx.get(f"{api}/api/v1/requests/{rid}", headers=mine).json()
    assert status["state"] == "filled"
    # The filled secret is bound to the device, has the request's access key, one view,
    # and the requester's token manages it.
    secret_status = httpx.get(
        f"{api}/api/v1/secrets/{status['secret_id']}/status", headers=mine
    ).json()
    assert secret_status["views_left"] == 1
    assert secret_status["is_bound"] is True

    # An expired request takes no fill.
    other_key = os.urandom(32)
    late = new_request(api, device, other_key, expires_in=60)
    clock.advance(61)
    response = fill_raw(api, late["id"], fill_token_of(other_key), sealed_to(device, other_key))
    assert response.status_code == 404


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def backend_url(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[str]:
    """A server on each real backend (SQLite, one Redis, a Redis Cluster)."""
    storage: dict[str, str] = {}
    if request.param != "sqlite":
        fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
        storage = {
            "storage_url": request.getfixturevalue(fixture),
            "rate_limit_storage_url": "memory://",
        }
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0), **storage)
    with in_process_server(config, clock) as url:
        yield url


def test_of_concurrent_fills_exactly_one_is_stored(backend_url: str) -> None:
    device = DeviceKeys.from_seed(os.urandom(32))
    key = os.urandom(32)
    created = new_request(backend_url, device, key)
    envelopes = [sealed_to(device, key, b"filler %d" % n) for n in range(24)]
    start = threading.Barrier(len(envelopes))

    def attempt(body: bytes) -> int:
        start.wait()
        return fill_raw(backend_url, created["id"], fill_token_of(key), body).status_code

    with ThreadPoolExecutor(len(envelopes)) as pool:
        statuses = list(pool.map(attempt, envelopes))
    assert sorted(set(statuses)) == [201, 404]
    assert statuses.count(201) == 1
    token = {"authorization": f"Bearer {created['request_token']}"}
    status = httpx.get(f"{backend_url}/api/v1/requests/{created['id']}", headers=token).json()
    assert status["state"] == "filled"
    # The stored secret is the winner's: it opens on the device to that filler's words.
    winner = statuses.index(201)
    with SecretsApi(backend_url) as api:
        received: list[bytes] = []
        share = parse_share_link(f"{backend_url}/s/{status['secret_id']}#{b64url_encode(key)}")
        reveal_secret(api, share, received.append, device=lambda: device)
    assert b"".join(received) == b"filler %d" % winner


def test_requests_are_priced_like_creates(tmp_path: Path, clock: ManualClock) -> None:
    """Opening and filling count against the `create` rate limit (429 with Retry-After)."""
    limits = {**rate_limits(0), "rate_create": 3}
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **limits)
    device = DeviceKeys.from_seed(os.urandom(32))
    key = os.urandom(32)
    with in_process_server(config, clock) as url:
        created = new_request(url, device, key)
        new_request(url, device, os.urandom(32))
        assert (
            fill_raw(url, created["id"], fill_token_of(key), sealed_to(device, key)).status_code
            == 201
        )
        refused = httpx.post(
            f"{url}/api/v1/requests",
            json={
                "device_key": b64url_encode(device.public.signing_key),
                "access_key": b64url_encode(AccessSigner(key).public_key),
                "fill_token": b64url_encode(fill_token_of(key)),
            },
        )
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0


def test_cli_refuses_bad_request_options_before_sending(people: tuple[Device, Device]) -> None:
    requester, _ = people
    requester.init()
    assert "--wait" in one_line_refusal(requester.run("secret", "request", "-o", "x.txt"), code=2)
    assert "1 minute" in one_line_refusal(
        requester.run("secret", "request", "--expires", "30s"), code=2
    )
    assert "pickup link" in one_line_refusal(
        requester.run("secret", "reveal", "http://127.0.0.1:1/ask/" + "A" * 22 + "#x.y"), code=2
    )


def test_the_server_logs_nothing_of_a_request(
    server: ServerProcess, people: tuple[Device, Device]
) -> None:
    """A whole request flow at debug level: no request id, key, token, fill token, secret id,
    device key or content in the server's output."""
    requester, _ = people
    code = requester.init()
    content = b"LOGGED-NOWHERE-" + os.urandom(6).hex().encode()
    request_link, pickup_link = open_by_cli(requester)
    fill(server.url, request_link, content)
    assert requester.ok("secret", "reveal", pickup_link).encode() == content
    request = parse_request_link(request_link)
    pickup = parse_pickup_link(pickup_link)
    with SecretsApi(server.url) as api:
        status = api.request_status(pickup.request_id, pickup.request_token)
    assert status.secret_id is not None

    def spellings(raw: bytes) -> list[str]:
        return [b64url_encode(raw), raw.hex(), repr(raw)[2:-1]]

    needles = [
        content.decode(),
        code,
        request.request_id,
        status.secret_id,
        pickup.request_token,
        *spellings(request.request_key),
        *spellings(fill_token_of(request.request_key)),
        *spellings(request.device.signing_key),
        *spellings(request.device.sealing_key),
    ]
    output = server.output()
    assert '"route":"/api/v1/requests/{id}/fill"' in output  # the flow was logged
    for needle in needles:
        assert needle not in output, f"the server logged {needle[:6]}..."


def test_a_request_filled_from_the_cli(
    server: ServerProcess, people: tuple[Device, Device]
) -> None:
    requester, filler = people
    requester.init()
    request_link, pickup_link = open_by_cli(requester)
    done = filler.run("secret", "fill", request_link, stdin=SECRET)
    assert done.returncode == 0, done.stderr.decode()
    assert "Sent" in done.stderr.decode()
    assert requester.ok("secret", "reveal", pickup_link).encode() == SECRET
    # Once only: exit 3 with the request's sentence.
    assert "already filled" in one_line_refusal(
        filler.run("secret", "fill", request_link, stdin=b"again"), code=3
    )
    assert "request link" in one_line_refusal(
        filler.run("secret", "fill", request_link.replace("atd1-", "atd2-"), stdin=b"x"), code=2
    )


def test_a_request_filled_from_the_cli_with_a_file(
    server: ServerProcess, people: tuple[Device, Device], tmp_path: Path
) -> None:
    """`atopos secret fill REQUEST_LINK FILE` streams the file, name and all, to the
    requester's device; a directory, a missing file or a FIFO is refused before sending."""
    requester, filler = people
    requester.init()
    request_link, pickup_link = open_by_cli(requester)
    source = tmp_path / "tax return 2026.pdf"
    source.write_bytes(os.urandom(600_000))  # several sealed pieces
    for refused in (tmp_path, tmp_path / "missing.pdf"):
        done = filler.run("secret", "fill", request_link, str(refused))
        assert done.returncode == 2, done.stderr.decode()
        assert "Traceback" not in done.stderr.decode()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line_refusal(
        filler.run("secret", "fill", request_link, str(fifo)), code=2
    )
    with SecretsApi(server.url) as api:
        pickup = parse_pickup_link(pickup_link)
        assert api.request_status(pickup.request_id, pickup.request_token).state == "open"

    done = filler.run("secret", "fill", request_link, str(source))
    assert done.returncode == 0, done.stderr.decode()
    assert "Sent" in done.stderr.decode()
    out = tmp_path / "out"
    out.mkdir()
    requester.ok("secret", "reveal", pickup_link, "-o", str(out))
    assert (out / source.name).read_bytes() == source.read_bytes()


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def backend_and_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[tuple[str, str]]:
    """A server on each real backend, and its storage URL (to play a node that dies)."""
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    if request.param != "sqlite":
        fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
        config = ServerConfig(
            data_dir=tmp_path / "data",
            pow_bits=0,
            storage_url=request.getfixturevalue(fixture),
            rate_limit_storage_url="memory://",
            **rate_limits(0),
        )
    with in_process_server(config, clock) as url:
        yield url, config.resolved_storage_url()


def _as_dead_node(
    storage_url: str, step: Callable[[SecretAndRequestStore], Awaitable[None]]
) -> None:
    """Run `step` on a second node's store of the same backend, which then 'dies'."""

    async def main() -> None:
        store = open_store(storage_url)
        await store.start(0)
        try:
            await step(store)
        finally:
            await store.aclose()

    asyncio.run(main())


def test_a_claim_whose_node_died_lapses(
    backend_and_store: tuple[str, str], clock: ManualClock
) -> None:
    """A node that dies between claim and complete does not close the request until it
    expires: the claim's lease lapses and a new fill takes it. Had the dead node stored its
    secret, that secret is the answer and the request takes no other fill."""
    url, storage_url = backend_and_store
    device = DeviceKeys.from_seed(os.urandom(32))
    key = os.urandom(32)
    created = new_request(url, device, key)
    rid, mine = created["id"], {"authorization": f"Bearer {created['request_token']}"}
    request_id = b64url_decode(str(rid))

    async def claim_only(store: SecretAndRequestStore) -> None:
        await store.claim_request(request_id, os.urandom(16), int(clock.now()))

    _as_dead_node(storage_url, claim_only)
    assert httpx.get(f"{url}/api/v1/requests/{rid}", headers=mine).json()["state"] == "filling"
    assert fill_raw(url, rid, fill_token_of(key), sealed_to(device, key)).status_code == 404
    clock.advance(CLAIM_LEASE_SECONDS)
    status = httpx.get(f"{url}/api/v1/requests/{rid}", headers=mine).json()
    assert (status["state"], status["secret_id"]) == ("open", None)
    assert fill_raw(url, rid, fill_token_of(key), sealed_to(device, key)).status_code == 201
    status = httpx.get(f"{url}/api/v1/requests/{rid}", headers=mine).json()
    assert status["state"] == "filled"
    with SecretsApi(url) as api:
        received: list[bytes] = []
        share = parse_share_link(f"{url}/s/{status['secret_id']}#{b64url_encode(key)}")
        reveal_secret(api, share, received.append, device=lambda: device)
    assert b"".join(received) == SECRET

    # A dead node that stored its secret but never completed the request.
    key = os.urandom(32)
    created = new_request(url, device, key)
    rid, mine = created["id"], {"authorization": f"Bearer {created['request_token']}"}
    request_id, stored_id = b64url_decode(str(rid)), os.urandom(16)
    envelope = sealed_to(device, key, b"from the node that died")

    async def claim_and_store(store: SecretAndRequestStore) -> None:
        now = int(clock.now())
        info = await store.claim_request(request_id, stored_id, now)

        async def body() -> AsyncIterator[bytes]:
            yield envelope

        secret = NewSecret(
            secret_id=stored_id,
            manage_token_hash=info.token_hash,
            kind="text",
            views=1,
            created_at=now,
            expires_at=now + info.secret_lifetime,
            device_key=info.device_key,
            access_key=info.access_key,
        )
        await store.create(secret, body())

    _as_dead_node(storage_url, claim_and_store)
    clock.advance(CLAIM_LEASE_SECONDS)
    assert fill_raw(url, rid, fill_token_of(key), sealed_to(device, key)).status_code == 404
    status = httpx.get(f"{url}/api/v1/requests/{rid}", headers=mine).json()
    assert (status["state"], status["secret_id"]) == ("filled", b64url_encode(stored_id))


def test_a_fill_that_outlives_its_request_keeps_nothing(tmp_path: Path, clock: ManualClock) -> None:
    """An upload claimed the request, which then expired before the upload ended: the
    filler hears 404 and the server deletes the secret it stored (nobody could find it)."""
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    device = DeviceKeys.from_seed(os.urandom(32))
    key = os.urandom(32)
    with in_process_server(config, clock) as url:
        created = new_request(url, device, key, expires_in=60)
        rid, mine = created["id"], {"authorization": f"Bearer {created['request_token']}"}
        envelope = sealed_to(device, key)
        go_on = threading.Event()

        def body() -> Iterator[bytes]:
            yield envelope[:-16]
            go_on.wait(30)
            yield envelope[-16:]

        def upload() -> int:
            return httpx.post(
                f"{url}/api/v1/requests/{rid}/fill",
                timeout=60,
                content=body(),
                headers={**OCTETS, "authorization": f"Bearer {b64url_encode(fill_token_of(key))}"},
            ).status_code

        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(upload)
            for _ in range(200):
                state = httpx.get(f"{url}/api/v1/requests/{rid}", headers=mine).json()["state"]
                if state == "filling":
                    break
                threading.Event().wait(0.05)
            assert state == "filling"
            clock.advance(61)
            go_on.set()
            assert answer.result() == 404
    with sqlite3.connect(config.data_dir / "atopos.db") as conn:
        assert conn.execute("SELECT count(*) FROM secrets").fetchone()[0] == 0
