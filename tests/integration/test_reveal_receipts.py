"""Reveal receipts with the real CLI against a server on an injected clock: the minutes shown
by `secret status` are those of the views spent, also after the last view burned the secret;
`secret status --wait` returns within a second of the next view, or when the secret expires;
the receipts endpoint checks its token and parameters."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from bench.harness import end_process

from atopos.crypto.base64url import b64url_decode
from atopos.server.config import ServerConfig, rate_limits
from atopos.server.secrets.receipts import MAX_RECEIPT_WAITERS
from atopos.storage.redis import SecretKeys
from tests.redis_servers import RedisClusterServers, RedisServer
from tests.servers import ATOPOS, ManualClock, in_process_server

START = 1_800_000_000  # 2027-01-15 08:00:00 UTC
UTC = {"TZ": "UTC"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def url(tmp_path: Path, clock: ManualClock) -> Iterator[str]:
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    with in_process_server(config, clock) as server_url:
        yield server_url


def atopos(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ATOPOS, *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **UTC},
    )


def create(url: str, *extra: str) -> tuple[str, str]:
    created = atopos("--server", url, "secret", "create", *extra, stdin=b"watched")
    assert created.returncode == 0, created.stderr
    manage = created.stderr.decode().split("Manage link (keep it private): ")[1].strip()
    return created.stdout.decode().strip(), manage


def reveal(link: str) -> None:
    revealed = atopos("secret", "reveal", link)
    assert (revealed.returncode, revealed.stdout) == (0, b"watched"), revealed.stderr


def viewed_lines(manage: str) -> list[str]:
    status = atopos("secret", "status", manage)
    assert status.returncode == 0, status.stderr
    return [line for line in status.stdout.decode().splitlines() if line.startswith("Viewed")]


def test_the_minutes_shown_are_those_of_the_views_spent(url: str, clock: ManualClock) -> None:
    link, manage = create(url, "--views", "3")
    assert viewed_lines(manage) == []
    clock.advance(59)  # 08:00:59
    reveal(link)
    clock.advance(62)  # 08:02:01
    reveal(link)
    assert viewed_lines(manage) == [
        "Viewed at: 2027-01-15 08:00 UTC",
        "Viewed at: 2027-01-15 08:02 UTC",
    ]
    clock.advance(3600 * 5)  # 13:02:01, the last view burns it
    reveal(link)
    status = atopos("secret", "status", manage)
    assert status.returncode == 0, status.stderr
    assert status.stdout.decode().splitlines() == [
        "Views left: 0 (every view was spent; the secret is gone)",
        "Expires at: 2027-01-16 08:00:00 UTC",
        "Viewed at: 2027-01-15 08:00 UTC",
        "Viewed at: 2027-01-15 08:02 UTC",
        "Viewed at: 2027-01-15 13:02 UTC",
    ]
    assert atopos("secret", "reveal", link).returncode == 3
    clock.advance(3600 * 19)  # past its expiry: the receipts went with it
    assert atopos("secret", "status", manage).returncode == 3


def _start_waiting(manage: str) -> subprocess.Popen[bytes]:
    waiting = subprocess.Popen(
        [ATOPOS, "secret", "status", "--wait", manage],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **UTC},
    )
    assert waiting.stderr is not None
    said = b""
    while b"Waiting for the next view" not in said:  # the status is printed before it
        ready, _, _ = select.select([waiting.stderr], [], [], 30)
        assert ready, said
        piece = os.read(waiting.stderr.fileno(), 4096)
        assert piece, said
        said += piece
    return waiting


def test_wait_returns_within_a_second_of_the_view(url: str, clock: ManualClock) -> None:
    # Three views, each timed: a poll slower than a second would miss at least one of them.
    link, manage = create(url, "--views", "3")
    minutes = ("08:10", "08:20", "08:30")
    for number, minute in enumerate(minutes):
        waiting = _start_waiting(manage)
        try:
            clock.advance(600)
            reveal(link)
            viewed = time.monotonic()
            waiting.wait(timeout=10)
            returned = time.monotonic()
        finally:
            end_process(waiting)
        assert waiting.stdout is not None
        assert waiting.returncode == 0
        shown = waiting.stdout.read().decode().splitlines()
        # The status lists the views before, then the new one is printed as it is spent.
        assert [line for line in shown if line.startswith("Viewed at")] == [
            f"Viewed at: 2027-01-15 {earlier} UTC" for earlier in minutes[: number + 1]
        ]
        assert shown[-1] == f"Viewed at: 2027-01-15 {minute} UTC"
        assert returned - viewed < 1.0


def test_wait_returns_when_the_secret_expires(url: str, clock: ManualClock) -> None:
    _, manage = create(url, "--expires", "1m")
    waiting = _start_waiting(manage)
    try:
        clock.advance(61)
        waiting.wait(timeout=10)
    finally:
        end_process(waiting)
    assert waiting.stderr is not None
    assert waiting.returncode == 3
    assert (
        waiting.stderr.read()
        .decode()
        .endswith("Error: The secret expired or was deleted before another view was spent.\n")
    )


def test_the_receipts_endpoint_checks_token_and_parameters(url: str) -> None:
    _, manage = create(url)
    secret_id, token = manage.split("/m/")[1].split("#")
    endpoint = f"{url}/api/v1/secrets/{secret_id}/receipts"
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(timeout=30) as client:
        assert client.get(endpoint).status_code == 403
        wrong = {"authorization": "Bearer " + "A" * 43}
        assert client.get(endpoint, headers=wrong).status_code == 403
        answer = client.get(endpoint, headers=auth)
        assert answer.status_code == 200
        assert answer.json() == {"views_left": 1, "expires_at": START + 86400, "viewed_at": []}
        for params in ({"wait": "16"}, {"seen": "-1"}, {"wait": "x"}, {"other": "1"}):
            refused = client.get(endpoint, headers=auth, params=params)
            assert refused.status_code == 422, params
        status = client.get(f"{url}/api/v1/secrets/{secret_id}/status", headers=auth).json()
        assert status["viewed_at"] == []
        assert (
            client.get(f"{url}/api/v1/secrets/{'A' * 22}/receipts", headers=auth).status_code == 404
        )


def _held_seconds(client: httpx.Client, endpoint: str, auth: dict[str, str]) -> float:
    started = time.monotonic()
    answer = client.get(endpoint, headers=auth, params={"seen": "0", "wait": "2"})
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started


def test_waits_are_capped_and_a_client_that_left_frees_its_place(url: str) -> None:
    # A client that asks to wait and closes its connection must not keep one of the node's
    # places for the rest of its 15 s: else four addresses (64 connections each, the
    # per-client cap) closing sockets keep every other `--wait` answered at once, and its
    # loop busy-polling into the rate limit.
    _, manage = create(url)
    secret_id, token = manage.split("/m/")[1].split("#")
    path = f"/api/v1/secrets/{secret_id}/receipts"
    auth = {"authorization": f"Bearer {token}"}
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"GET {path}?seen=0&wait=15 HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    sources = [f"127.0.0.{2 + number // 64}" for number in range(MAX_RECEIPT_WAITERS)]
    waiting = [
        socket.create_connection((host, int(port)), source_address=(source, 0))
        for source in sources
    ]
    try:
        for connection in waiting:
            connection.sendall(request)
        time.sleep(1.5)
        with httpx.Client(timeout=30) as client:
            # Every place is taken: answered at once, as with wait=0.
            assert _held_seconds(client, url + path, auth) < 1.0
            for connection in waiting:
                connection.close()
            time.sleep(1.0)
            # The closed connections gave their places back: this wait is held.
            assert _held_seconds(client, url + path, auth) >= 1.5
    finally:
        for connection in waiting:
            connection.close()


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
def test_a_redis_secret_stored_before_receipts_is_watched_like_any_other(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> None:
    # Such a secret has no receipts key: its status must not say "expired or deleted" while
    # it lives, and `--wait` must return with its next view.
    client: redis.Redis | redis.RedisCluster
    if backend == "redis":
        single: RedisServer = request.getfixturevalue("redis_server")
        single.flush()
        storage_url, client = single.url, single.client()
    else:
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        storage_url = cluster.url
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    config = ServerConfig(
        data_dir=tmp_path / "data", storage_url=storage_url, pow_bits=0, **rate_limits(0)
    )
    with client, in_process_server(config, clock) as url:
        link, manage = create(url, "--views", "2")
        secret_id = b64url_decode(manage.split("/m/")[1].split("#")[0])
        assert client.delete(SecretKeys(secret_id).receipts) == 1  # as written before receipts
        assert viewed_lines(manage) == []
        waiting = _start_waiting(manage)
        try:
            clock.advance(600)  # 08:10
            reveal(link)
            waiting.wait(timeout=10)
        finally:
            end_process(waiting)
        assert waiting.stdout is not None
        assert waiting.returncode == 0
        assert waiting.stdout.read().decode().splitlines()[-1] == "Viewed at: 2027-01-15 08:10 UTC"
        clock.advance(60)  # 08:11, the last view burns it
        reveal(link)
        assert viewed_lines(manage) == [
            "Viewed at: 2027-01-15 08:10 UTC",
            "Viewed at: 2027-01-15 08:11 UTC",
        ]
