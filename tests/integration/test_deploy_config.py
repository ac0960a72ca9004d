"""The files of deploy/ are checked by the tools that will read them: Caddy validates and
formats the Caddyfile, systemd-analyze verifies the units, redis-server runs each Redis
config; and a node runs under the kernel's form of MemoryDenyWriteExecute."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from atopos.server.config import ServerConfig
from tests.api_client import create, envelope, reveal, ticket
from tests.deploy_servers import (
    CADDY,
    CADDYFILE,
    DEPLOY,
    DeployedRedis,
    caddy_environment,
    read_env_file,
)
from tests.servers import ATOPOS, free_port, wait_healthy

needs_caddy = pytest.mark.skipif(shutil.which("caddy") is None, reason="needs caddy")
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"
)
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis")

_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1


def _validate(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CADDY, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=caddy_environment(tmp_path, ATOPOS_CADDY_ADMIN="off", **settings),
    )


@needs_caddy
def test_the_caddyfile_validates_with_automatic_https(tmp_path: Path) -> None:
    done = _validate(tmp_path, ATOPOS_SITE="secrets.example.org")
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr


@needs_caddy
def test_the_caddyfile_validates_with_certificate_files(tmp_path: Path) -> None:
    from tests.tls_certs import TestCa

    leaf = TestCa.create(tmp_path / "tls").issue("server", ("secrets.example.org",))
    done = _validate(
        tmp_path,
        ATOPOS_SITE="secrets.example.org",
        ATOPOS_TLS_MODE="files",
        ATOPOS_TLS_CERT=str(leaf.cert_path),
        ATOPOS_TLS_KEY=str(leaf.key_path),
    )
    assert done.returncode == 0, done.stderr


@needs_caddy
def test_the_caddyfile_is_formatted(tmp_path: Path) -> None:
    done = subprocess.run(
        [CADDY, "fmt", str(CADDYFILE)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == CADDYFILE.read_text(), "run: caddy fmt --overwrite deploy/Caddyfile"


def test_every_setting_of_caddy_env_is_a_placeholder_of_the_caddyfile() -> None:
    placeholders = set(re.findall(r"\{\$([A-Z0-9_]+)", CADDYFILE.read_text()))
    assert set(read_env_file(DEPLOY / "caddy.env")) <= placeholders


@needs_systemd_analyze
def test_the_node_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "atopos@.service").read_text()
    assert "/opt/atopos/.venv/bin/atopos serve" in unit
    # systemd-analyze wants the binary to exist; the rest is the unit as shipped.
    (tmp_path / "atopos@8081.service").write_text(
        unit.replace("/opt/atopos/.venv/bin/atopos", ATOPOS)
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "atopos@8081.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    for directive in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "StateDirectory=atopos/%i",
    ):
        assert directive in unit


@needs_systemd_analyze
@pytest.mark.skipif(
    not Path("/lib/systemd/system/caddy.service").exists(), reason="needs Debian's caddy unit"
)
def test_the_caddy_drop_in_verifies_with_debians_unit(tmp_path: Path) -> None:
    shutil.copy("/lib/systemd/system/caddy.service", tmp_path / "caddy.service")
    (tmp_path / "caddy.service.d").mkdir()
    shutil.copy(
        DEPLOY / "systemd" / "caddy.service.d" / "atopos.conf", tmp_path / "caddy.service.d"
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "caddy.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def _config(redis_server: DeployedRedis, name: str) -> str:
    with redis_server.client() as client:
        value = client.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


@needs_redis
def test_the_durable_redis_config_keeps_every_write_on_disk_and_nothing_else(
    tmp_path: Path,
) -> None:
    server = DeployedRedis("atopos-durable", tmp_path).start()
    try:
        assert _config(server, "appendonly") == "yes"
        assert _config(server, "appendfsync") == "always"
        assert _config(server, "no-appendfsync-on-rewrite") == "no"
        assert _config(server, "maxmemory-policy") == "noeviction"
        assert _config(server, "save") == ""
        assert _config(server, "protected-mode") == "yes"
        assert _config(server, "bind").split()[0] == "127.0.0.1"
        with server.client() as client:
            client.set("atopos:{t}:meta", b"x")
    finally:
        # SIGTERM: a clean shutdown, which would write an RDB file if `save` allowed it.
        server.stop()
    files = sorted(path.name for path in server.data_dir.rglob("*") if path.is_file())
    assert files
    assert all(name.startswith("atopos.aof") for name in files), files


@needs_redis
def test_the_ephemeral_redis_config_writes_nothing_to_disk(tmp_path: Path) -> None:
    server = DeployedRedis("atopos-ephemeral", tmp_path).start()
    try:
        assert _config(server, "appendonly") == "no"
        assert _config(server, "save") == ""
        assert _config(server, "maxmemory-policy") == "noeviction"
        with server.client() as client:
            client.set("atopos-limits:{x}", 1)
    finally:
        server.stop()
    assert list(server.data_dir.iterdir()) == []


def test_trusted_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOPOS_TRUSTED_PROXIES", "127.0.0.1, 0:0::1")
    assert ServerConfig.from_env().trusted_proxies == ("127.0.0.1", "::1")
    monkeypatch.setenv("ATOPOS_TRUSTED_PROXIES", "127.0.0.1,caddy.local")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        ServerConfig.from_env()


def test_serve_refuses_a_bad_trusted_proxy_in_one_sentence(tmp_path: Path) -> None:
    done = subprocess.run(
        [ATOPOS, "serve", "--data", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ATOPOS_TRUSTED_PROXIES": "not-an-address"},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "Error: ATOPOS_TRUSTED_PROXIES must be IP addresses "
        "('not-an-address' does not appear to be an IPv4 or IPv6 address)."
    ]


def _kernel_has_mdwe() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes, sys; "
            f"sys.exit(ctypes.CDLL(None).prctl({_PR_SET_MDWE}, {_PR_MDWE_REFUSE_EXEC_GAIN}, "
            "0, 0, 0) != 0)",
        ],
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _kernel_has_mdwe(), reason="needs Linux 6.3+ (PR_SET_MDWE)")
def test_a_node_runs_without_memory_both_writable_and_executable(tmp_path: Path) -> None:
    """atopos@.service sets MemoryDenyWriteExecute=yes; the kernel's PR_SET_MDWE refuses the
    same (a mapping that is, or becomes, writable and executable), inherited across exec."""
    port = free_port()
    wrapper = (
        "import ctypes, os, sys\n"
        f"if ctypes.CDLL(None).prctl({_PR_SET_MDWE}, {_PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):\n"
        "    sys.exit('PR_SET_MDWE failed')\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", wrapper, ATOPOS, "serve", "--port", str(port),
             "--data", str(tmp_path / "data"), "--pow-bits", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ATOPOS_RATE_LIMIT": "0"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        body, _ = envelope(b"no W^X needed")
        with httpx.Client(timeout=30) as client:
            sid = str(create(client, url, body)["id"])
            response = reveal(client, url, sid, ticket(client, url, sid))
        assert response.status_code == 200
        assert response.content == body
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert '"level":"error"' not in log_path.read_text()
