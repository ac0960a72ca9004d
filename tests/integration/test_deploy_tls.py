"""The deployment of deploy/ end to end: two `atopos serve` nodes on the durable Redis of
deploy/redis/atopos-durable.conf (rate-limit counters in the ephemeral one), with one key
file, behind `caddy run` with deploy/Caddyfile terminating TLS (a throwaway CA). The CLI
talks to Caddy over HTTPS with the right pin, and a wrong pin stops it before any request
reaches Caddy or a node."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atopos.client.links import parse_manage_link, parse_share_link
from atopos.client.pinning import PIN_MISMATCH, format_pin, spki_sha256
from tests.deploy_servers import DEPLOY, CaddyServer, DeployedRedis, read_env_file
from tests.redis_servers import write_key_file
from tests.servers import ATOPOS, ServerProcess
from tests.tls_certs import Leaf, TestCa

pytestmark = pytest.mark.skipif(
    not all(map(shutil.which, ("caddy", "redis-server"))),
    reason="needs Debian's caddy and redis-server (scripts/system-deps.sh)",
)


@dataclasses.dataclass
class Deployment:
    caddy: CaddyServer
    nodes: list[ServerProcess]
    durable: DeployedRedis
    ephemeral: DeployedRedis
    ca: TestCa
    leaf: Leaf
    home: Path

    @property
    def pin(self) -> str:
        return format_pin(spki_sha256(self.leaf.der))

    def cli(
        self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("ATOPOS_")}
        return subprocess.run(
            [ATOPOS, *args],
            input=stdin,
            capture_output=True,
            timeout=60,
            env={**base, "ATOPOS_HOME": str(self.home), **(env or {})},
        )

    def requests_seen(self) -> tuple[int, int]:
        """Requests Caddy logged, and API requests the nodes logged (health checks aside)."""
        caddy = len(_json_lines(self.caddy.access_log))
        nodes = sum(
            1
            for node in self.nodes
            for entry in _json_lines(node.log_path)
            if entry.get("msg") == "request" and entry.get("route") != "/healthz"
        )
        return caddy, nodes


def _json_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("deploy")
    durable = DeployedRedis("atopos-durable", tmp / "redis-durable").start()
    ephemeral = DeployedRedis("atopos-ephemeral", tmp / "redis-ephemeral").start()
    rooms = DeployedRedis("atopos-rooms", tmp / "redis-rooms").start()
    nodes: list[ServerProcess] = []
    caddy: CaddyServer | None = None
    try:
        key_file = write_key_file(tmp / "atopos.key", os.urandom(32))
        # The nodes' settings are deploy/atopos.env's, but for the Redis ports; rate limits
        # stay on (high) so that their counters really go to the ephemeral Redis.
        env = read_env_file(DEPLOY / "atopos.env")
        env.pop("ATOPOS_LOG_LEVEL", None)  # the tests read debug logs
        env.update(
            ATOPOS_STORAGE=durable.url,
            ATOPOS_RATE_LIMIT_STORAGE=ephemeral.url,
            ATOPOS_ROOM_REDIS_URL=rooms.url,
            ATOPOS_KEY_FILE=str(key_file),
            ATOPOS_RATE_LIMIT="1000",
        )
        for name in ("a", "b"):
            nodes.append(ServerProcess(data_dir=tmp / name, log_path=tmp / f"{name}.log", env=env))
            nodes[-1].start()
        ca = TestCa.create(tmp / "tls")
        leaf = ca.issue("server")
        caddy = CaddyServer(
            tmp / "caddy",
            upstreams=[f"127.0.0.1:{node.port}" for node in nodes],
            cert_path=leaf.cert_path,
            key_path=leaf.key_path,
            ca_path=ca.cert_path,
        ).start()
        yield Deployment(caddy, nodes, durable, ephemeral, ca, leaf, tmp / "home")
    finally:
        if caddy is not None:
            caddy.stop()
        for node in nodes:
            node.stop()
        rooms.stop()
        ephemeral.stop()
        durable.stop()


def _wait_for(condition: object, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval


def _other_pin() -> str:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return format_pin(hashlib.sha256(spki).digest())


def test_pin_prints_the_pin_of_the_server_behind_caddy(deployment: Deployment) -> None:
    done = deployment.cli("--ca-file", str(deployment.ca.cert_path), "pin", deployment.caddy.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == deployment.pin
    stderr = done.stderr.decode()
    assert "Subject: CN=localhost" in stderr
    assert "Issuer: CN=Atopos test CA" in stderr
    assert "Certificate expires: " in stderr


def test_pin_refuses_a_certificate_it_cannot_verify(deployment: Deployment) -> None:
    # Without the test CA the certificate does not verify, and no pin is printed.
    done = deployment.cli("pin", deployment.caddy.url)
    assert done.returncode == 5
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"Error: The TLS certificate of {deployment.caddy.url} could not be verified."
    ]


def test_create_and_reveal_through_caddy_with_the_right_pin(deployment: Deployment) -> None:
    pin = deployment.cli(
        "--ca-file", str(deployment.ca.cert_path), "pin", deployment.caddy.url
    ).stdout.decode()
    # Pin and CA from the environment for create, from flags for reveal.
    created = deployment.cli(
        "--server",
        deployment.caddy.url,
        "secret",
        "create",
        "--views",
        "2",
        stdin=b"through the proxy",
        env={"ATOPOS_PIN_SPKI": pin.strip(), "ATOPOS_CA_FILE": str(deployment.ca.cert_path)},
    )
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    assert link.startswith(f"{deployment.caddy.url}/s/")
    for _ in range(2):  # two views: with two nodes behind Caddy, both may serve one
        revealed = deployment.cli(
            "--pin-spki",
            pin.strip(),
            "--ca-file",
            str(deployment.ca.cert_path),
            "secret",
            "reveal",
            link,
        )
        assert revealed.returncode == 0, revealed.stderr
        assert revealed.stdout == b"through the proxy"
    gone = deployment.cli(
        "--pin-spki", pin, "--ca-file", str(deployment.ca.cert_path), "secret", "reveal", link
    )
    assert gone.returncode == 3


def test_a_wrong_pin_exits_5_and_no_request_reaches_caddy_or_a_node(
    deployment: Deployment,
) -> None:
    ca = ("--ca-file", str(deployment.ca.cert_path))
    right = ("--pin-spki", deployment.pin, *ca)
    wrong = ("--pin-spki", _other_pin(), *ca)
    created = deployment.cli(
        "--server", deployment.caddy.url, *right, "secret", "create", stdin=b"pinned"
    )
    assert created.returncode == 0, created.stderr
    link = created.stdout.decode().strip()
    manage_link = str(
        parse_manage_link(
            created.stderr.decode().split("Manage link (keep it private): ", 1)[1].strip()
        )
    )
    _wait_for(lambda: deployment.requests_seen()[0] > 0, "the create in Caddy's log")
    before = deployment.requests_seen()

    attempts = [
        deployment.cli("--server", deployment.caddy.url, *wrong, "secret", "create", stdin=b"x"),
        deployment.cli(*wrong, "secret", "reveal", link),
        deployment.cli(*wrong, "secret", "status", manage_link),
        deployment.cli(*wrong, "secret", "delete", manage_link),
    ]
    for attempt in attempts:
        assert attempt.returncode == 5, attempt.stderr
        assert attempt.stdout == b""
        assert attempt.stderr.decode().splitlines() == [f"Error: {PIN_MISMATCH}"]

    # A barrier: one request with the right pin. Once Caddy and a node have logged it,
    # anything the wrong-pin runs had sent would have been logged before it.
    status = deployment.cli(*right, "secret", "status", manage_link)
    assert status.returncode == 0, status.stderr
    _wait_for(
        lambda: all(a > b for a, b in zip(deployment.requests_seen(), before, strict=True)),
        "the barrier request in the logs",
    )
    assert deployment.requests_seen() == (before[0] + 1, before[1] + 1)

    # The secret is untouched: the wrong-pin reveal took no view, the delete burned nothing.
    revealed = deployment.cli(*right, "secret", "reveal", link)
    assert revealed.returncode == 0, revealed.stderr
    assert revealed.stdout == b"pinned"


def test_caddy_spreads_requests_over_both_nodes_and_adds_its_headers(
    deployment: Deployment,
) -> None:
    verify = ssl.create_default_context(cafile=str(deployment.ca.cert_path))
    secret_id = "A" * 22
    with httpx.Client(base_url=deployment.caddy.url, verify=verify) as client:
        for _ in range(24):
            response = client.get(
                f"/api/v1/secrets/{secret_id}/status",
                headers={"authorization": "Bearer " + "B" * 43},
            )
            assert response.status_code in (403, 404)
        headers = response.headers
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert "server" not in headers
    # The node's own headers pass through.
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    for node in deployment.nodes:
        routes = [entry.get("route") for entry in _json_lines(node.log_path)]
        assert "/api/v1/secrets/{id}/status" in routes, "a node got no request"


def test_rate_limit_counters_live_in_the_ephemeral_redis_only(deployment: Deployment) -> None:
    verify = ssl.create_default_context(cafile=str(deployment.ca.cert_path))
    httpx.post(f"{deployment.caddy.url}/api/v1/secrets/{'C' * 22}/challenge", verify=verify)
    with deployment.ephemeral.client() as ephemeral, deployment.durable.client() as durable:
        assert ephemeral.keys("atopos-limits*")
        assert not durable.keys("atopos-limits*")
    # Nothing of the ephemeral Redis is on disk.
    assert list(deployment.ephemeral.data_dir.iterdir()) == []


def test_the_logs_hold_no_client_address_and_no_secret_id(deployment: Deployment) -> None:
    pin = deployment.pin
    ca = str(deployment.ca.cert_path)
    created = deployment.cli(
        "--server", deployment.caddy.url, "--pin-spki", pin, "--ca-file", ca,
        "secret", "create", stdin=b"log hygiene",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    link = parse_share_link(created.stdout.decode().strip())
    revealed = deployment.cli("--pin-spki", pin, "--ca-file", ca, "secret", "reveal", str(link))
    assert revealed.returncode == 0, revealed.stderr

    access = _json_lines(deployment.caddy.access_log)
    assert access, "the access log is empty"
    for entry in access:
        request = entry["request"]
        assert isinstance(request, dict)
        for field in ("remote_ip", "remote_port", "client_ip", "uri", "headers"):
            assert field not in request, f"the access log records {field}"
        assert "resp_headers" not in entry
    text = deployment.caddy.access_log.read_text() + deployment.caddy.log_path.read_text()
    assert link.secret_id not in text
    assert "/s/" not in text
    assert "/api/v1/secrets/" not in text
    for node in deployment.nodes:
        assert link.secret_id not in node.output()
