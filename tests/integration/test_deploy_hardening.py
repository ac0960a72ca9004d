"""The deployment's own attack surface, checked with the tools that run it: Caddy's admin API
is reachable by no other local process, Caddy bounds slow clients and large bodies with the
values docs/operations.md gives, each Redis refuses a client without its password, the node
unit lets no shell run and reaches only this machine, and production installs get no
development tools."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.deploy_servers import (
    CADDY,
    CADDYFILE,
    DEPLOY,
    ROOT,
    CaddyServer,
    DeployedRedis,
    caddy_environment,
    read_env_file,
)
from tests.servers import ServerProcess, wait_healthy
from tests.tls_certs import TestCa

needs_caddy = pytest.mark.skipif(shutil.which("caddy") is None, reason="needs caddy")
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis")

NODE_UNIT = DEPLOY / "systemd" / "atopos@.service"
CADDY_DROP_IN = DEPLOY / "systemd" / "caddy.service.d" / "atopos.conf"
OPERATIONS = ROOT / "docs" / "operations.md"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
DEV_LOCK = ROOT / "requirements.lock"
DEV_TOOLS = (
    "pytest", "pytest-timeout", "pytest-playwright", "playwright", "mypy", "ruff",
    "hypothesis", "schemathesis", "pip-audit",
)  # fmt: skip


def _unit_values(path: Path, key: str) -> list[str]:
    """Every value of `key=` in a unit file, split on spaces, in order."""
    values: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith(f"{key}="):
            values.extend(line.partition("=")[2].split())
    return values


def _adapted_caddyfile(tmp_path: Path, **settings: str) -> dict[str, object]:
    done = subprocess.run(
        [CADDY, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=caddy_environment(tmp_path, **settings),
    )
    config: dict[str, object] = json.loads(done.stdout)
    return config


# -- Caddy's admin API ---------------------------------------------------------------------


@needs_caddy
def test_caddys_admin_api_is_a_unix_socket_in_the_drop_ins_private_directory(
    tmp_path: Path,
) -> None:
    admin = _adapted_caddyfile(tmp_path)["admin"]
    assert isinstance(admin, dict)
    listen = str(admin["listen"])
    assert listen.startswith("unix/"), f"the admin API listens on {listen}"
    socket_dir = Path(listen.removeprefix("unix/")).parent
    drop_in = CADDY_DROP_IN.read_text()
    assert socket_dir == Path("/run") / _unit_values(CADDY_DROP_IN, "RuntimeDirectory")[0]
    assert "RuntimeDirectoryMode=0700\n" in drop_in
    assert "UMask=0077\n" in drop_in


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CaddyServer, TestCa]]:
    """`caddy run` with deploy/Caddyfile and its admin API on a socket as the drop-in makes
    it, in front of one node on SQLite."""
    tmp = tmp_path_factory.mktemp("proxy")
    node = ServerProcess(data_dir=tmp / "node", log_path=tmp / "node.log")
    node.start()
    caddy: CaddyServer | None = None
    try:
        ca = TestCa.create(tmp / "tls")
        leaf = ca.issue("server")
        run_dir = tmp / "run-caddy"
        run_dir.mkdir(mode=0o700)
        caddy = CaddyServer(
            tmp / "caddy",
            upstreams=[f"127.0.0.1:{node.port}"],
            cert_path=leaf.cert_path,
            key_path=leaf.key_path,
            ca_path=ca.cert_path,
            admin=f"unix/{run_dir}/admin.sock",
        ).start()
        yield caddy, ca
    finally:
        if caddy is not None:
            caddy.stop()
        node.stop()


@needs_caddy
def test_no_other_local_process_reaches_the_admin_api_and_reload_still_works(
    proxied: tuple[CaddyServer, TestCa],
) -> None:
    caddy, ca = proxied
    admin_socket = Path(caddy.admin.removeprefix("unix/"))
    mode = admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) & 0o077 == 0, oct(mode)
    # Nothing on Caddy's default TCP address.
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:2019/config/", timeout=2)
    # Another user (nobody) cannot connect to the socket.
    # The system's Python: this venv's may live where nobody cannot read.
    probe = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
         str(admin_socket)],
        capture_output=True, text=True, timeout=30, user=65534, group=65534, extra_groups=[],
    )  # fmt: skip
    assert probe.returncode != 0
    assert "PermissionError" in probe.stderr
    # `caddy reload` (Debian's ExecReload) finds the socket from the Caddyfile and applies a
    # change: here, the `Retry-After` answer for an upstream that is down.
    env = caddy.environment()
    env["ATOPOS_UPSTREAMS"] = f"127.0.0.1:{_closed_port()}"
    done = subprocess.run(
        [CADDY, "reload", "--config", str(CADDYFILE), "--adapter", "caddyfile", "--force"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    verify = ssl.create_default_context(cafile=str(ca.cert_path))
    response = httpx.get(f"{caddy.url}/healthz", verify=verify, timeout=30)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    done = subprocess.run(
        [CADDY, "reload", "--config", str(CADDYFILE), "--adapter", "caddyfile", "--force"],
        capture_output=True, text=True, timeout=60, env=caddy.environment(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while httpx.get(f"{caddy.url}/healthz", verify=verify, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the node did not come back after the reload"
        time.sleep(0.1)  # polling interval


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- Slow clients and large bodies ------------------------------------------------------


def _documented_proxy_limits() -> dict[str, str]:
    """The table of Caddy's limits in docs/operations.md: setting -> value."""
    text = OPERATIONS.read_text()
    section = text.split("<!-- proxy-limits -->", 2)[1]
    rows = re.findall(r"^ *\| `([^`]+)` \| `([^`]+)` \|", section, flags=re.MULTILINE)
    return dict(rows)


@needs_caddy
def test_caddys_timeouts_and_caps_are_those_of_the_operations_guide(tmp_path: Path) -> None:
    documented = _documented_proxy_limits()
    config = _adapted_caddyfile(tmp_path)
    apps = config["apps"]
    assert isinstance(apps, dict)
    servers = apps["http"]["servers"]
    seconds = 1_000_000_000
    units = {"s": seconds, "m": 60 * seconds}
    for server in servers.values():
        for setting, key in (
            ("read_header", "read_header_timeout"),
            ("read_body", "read_timeout"),
            ("write", "write_timeout"),
            ("idle", "idle_timeout"),
        ):
            value = documented[setting]
            assert server[key] == int(value[:-1]) * units[value[-1]], setting
        header_kib = int(documented["max_header_size"].removesuffix("KiB"))
        assert server["max_header_bytes"] == header_kib * 1024
    sizes = [int(size) for size in re.findall(r'"max_size": *(\d+)', json.dumps(config))]
    assert sizes == [int(documented["request_body max_size"].removesuffix("MiB")) * 1024 * 1024]
    assert _unit_values(CADDY_DROP_IN, "LimitNOFILE") == [documented["LimitNOFILE"]]


@needs_caddy
def test_caddy_closes_a_slowloris_connection_after_the_header_timeout(
    proxied: tuple[CaddyServer, TestCa],
) -> None:
    """Headers sent one line a second never end; Caddy must hang up within read_header."""
    caddy, ca = proxied
    limit = _documented_proxy_limits()["read_header"]
    allowed = int(limit.removesuffix("s"))
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", caddy.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        tls.settimeout(1)
        closed_after = None
        for line in range(allowed + 10):
            try:
                tls.sendall(f"X-Slow-{line}: x\r\n".encode())
                if tls.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (ssl.SSLError, OSError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "Caddy kept a slowloris connection open"
    assert closed_after <= allowed + 2, closed_after


# -- Redis ---------------------------------------------------------------------------------


@needs_redis
@pytest.mark.parametrize("name", ["atopos-durable", "atopos-ephemeral"])
def test_each_redis_refuses_a_client_without_its_password(tmp_path: Path, name: str) -> None:
    server = DeployedRedis(name, tmp_path).start()
    try:
        for password in ("", "not-the-password"):
            with (
                server.client(password=password) as client,
                pytest.raises((redis.AuthenticationError, redis.ResponseError)),
            ):
                client.get("atopos:{t}:meta")
        with server.client() as client:
            assert client.ping()
            assert client.config_get("bind")["bind"].split() == ["127.0.0.1", "-::1"]
    finally:
        server.stop()


@needs_redis
def test_a_redis_without_its_password_file_does_not_start(tmp_path: Path) -> None:
    """The password lives in its own file: a missing file must not mean no password."""
    server = DeployedRedis("atopos-durable", tmp_path)
    server.port = _closed_port()
    server.data_dir.mkdir(parents=True)
    conf = server.render()
    server.password_file.unlink()
    done = subprocess.run(
        [shutil.which("redis-server") or "redis-server", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0


def test_the_nodes_redis_urls_carry_the_passwords() -> None:
    env = read_env_file(DEPLOY / "atopos.env")
    assert env["ATOPOS_STORAGE"] == "redis://:DURABLE_PASSWORD@127.0.0.1:6380/0"
    assert env["ATOPOS_RATE_LIMIT_STORAGE"] == "redis://:EPHEMERAL_PASSWORD@127.0.0.1:6381/0"
    for name in ("durable", "ephemeral"):
        conf = (DEPLOY / "redis" / f"atopos-{name}.conf").read_text()
        assert f"\ninclude /etc/redis/redis-atopos-{name}.password.conf\n" in conf
    # The install steps fill them in, and the file with the passwords is root's alone.
    guide = OPERATIONS.read_text()
    assert "install -m 0600 deploy/atopos.env /etc/atopos/atopos.env" in guide
    assert "DURABLE_PASSWORD" in guide
    assert "EPHEMERAL_PASSWORD" in guide


# -- The node's unit -------------------------------------------------------------------------


def _shells() -> set[Path]:
    listed = [
        line.strip()
        for line in Path("/etc/shells").read_text().splitlines()
        if line.startswith("/")
    ]
    names = [*listed, "/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/busybox"]
    return {Path(os.path.realpath(name)) for name in names if Path(name).exists()}


def test_the_node_unit_lets_no_shell_run() -> None:
    executable = [Path(path.lstrip("-")) for path in _unit_values(NODE_UNIT, "ExecPaths")]
    assert _unit_values(NODE_UNIT, "NoExecPaths") == ["/"]
    assert executable
    resolved = [Path(os.path.realpath(path)) for path in executable]
    for shell in _shells():
        for allowed in resolved:
            assert not shell.is_relative_to(allowed), f"{shell} may run (ExecPaths={allowed})"
    for allowed in executable:
        assert allowed not in (Path("/usr/bin"), Path("/bin"), Path("/usr/local/bin"), Path("/"))
    # The venv's interpreter is its own file (venv --copies), under an executable path.
    assert Path("/opt/atopos/.venv") in executable
    assert "python3 -m venv --copies /opt/atopos/.venv" in OPERATIONS.read_text()


def test_the_node_unit_reaches_only_this_machine() -> None:
    assert _unit_values(NODE_UNIT, "IPAddressDeny") == ["any"]
    assert _unit_values(NODE_UNIT, "IPAddressAllow") == ["localhost"]


# -- The production install ----------------------------------------------------------------


def _pins(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", lock.read_text(), re.MULTILINE))


def test_the_runtime_lock_has_no_development_tool_and_the_versions_of_the_dev_lock() -> None:
    runtime = _pins(RUNTIME_LOCK)
    development = _pins(DEV_LOCK)
    for tool in DEV_TOOLS:
        assert tool in development, tool
        assert tool not in runtime, f"{tool} would be installed in production"
    for name in ("cryptography", "starlette", "uvicorn", "redis", "typer", "websockets"):
        assert name in runtime, name
    for name, version in runtime.items():
        assert development.get(name) == version, f"{name}: {version} vs {development.get(name)}"
    assert "--hash=sha256:" in RUNTIME_LOCK.read_text()


def test_production_installs_use_the_runtime_lock() -> None:
    guide = OPERATIONS.read_text()
    assert "-r requirements-runtime.lock" in guide
    assert "-r requirements.lock" not in guide
    containerfile = (ROOT / "Containerfile").read_text()
    assert "-r requirements-runtime.lock" in containerfile
    assert "requirements.lock" not in containerfile.replace("requirements-runtime.lock", "")


# -- make bench ---------------------------------------------------------------------------


def test_make_bench_without_wrk_says_so_in_one_sentence_and_fails() -> None:
    """As a user who may not install packages, on a PATH without wrk."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("needs make")
    # Outside pytest's temporary directory, which only root may enter.
    with tempfile.TemporaryDirectory(prefix="atopos-no-wrk-") as where:
        tools = Path(where)
        tools.chmod(0o755)
        for tool in ("bash", "id", "sh"):
            (tools / tool).symlink_to(shutil.which(tool) or tool)
        done = subprocess.run(
            [make, "--no-print-directory", "-C", str(ROOT), "bench"],
            capture_output=True, text=True, timeout=60, user=65534, group=65534,
            extra_groups=[], env={"PATH": str(tools), "HOME": str(tools)},
        )  # fmt: skip
    assert done.returncode != 0
    first = done.stderr.splitlines()[0]
    assert first == "Missing system packages: wrk (install them: sudo apt-get install wrk)"
    assert "bench/secrets.py" not in done.stdout


# -- The node's unit, run: NoExecPaths=/ and ExecPaths= as the kernel enforces them -------

# A root of its own for the command, as systemd builds it for NoExecPaths=/ and ExecPaths=:
# everything is mounted noexec (a tmpfs root, /usr and /etc bound read-only into it),
# then each path of ExecPaths= is bound onto itself executable; then chroot.
_NO_EXEC_ROOT = """
set -eu
new=$1 count=$2; shift 2
mount -t tmpfs -o noexec,mode=0755 tmpfs "$new"
mkdir -p "$new/usr" "$new/etc" "$new/dev" "$new/tmp" "$new/data"
for link in bin lib lib64 sbin; do
  if [ -L "/$link" ]; then ln -s "$(readlink "/$link")" "$new/$link"; fi
done
mount --bind /usr "$new/usr"
mount -o remount,bind,ro,noexec "$new/usr"
mount --bind /etc "$new/etc"
mount -o remount,bind,ro,noexec "$new/etc"
mount --rbind /dev "$new/dev"
mount -t tmpfs -o noexec tmpfs "$new/tmp"
mount -t tmpfs -o noexec,mode=0700,uid=65534,gid=65534 tmpfs "$new/data"
while [ "$count" -gt 0 ]; do
  path=$1; shift; count=$((count - 1))
  mkdir -p "$new$path" 2>/dev/null || true
  mount --bind "$path" "$new$path"
  mount -o remount,bind,ro,exec "$new$path"
done
exec chroot --userspec=65534:65534 "$new" "$@"
"""


@pytest.fixture(scope="module")
def copied_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The production venv as docs/operations.md makes it (Debian's Python, --copies,
    requirements-runtime.lock, then the project), at a temporary path."""
    uv_binary = Path(sys.executable).with_name("uv")
    system_python = Path("/usr/bin/python3")
    if not system_python.exists() or not uv_binary.exists() or os.geteuid() != 0:
        pytest.skip("needs Debian's python3, uv (make) and root for mounts")
    where = tmp_path_factory.mktemp("opt") / "venv"
    subprocess.run(
        [str(system_python), "-m", "venv", "--copies", "--without-pip", str(where)],
        check=True,
        timeout=120,
    )
    for args in (
        ["--require-hashes", "-r", str(RUNTIME_LOCK)],
        ["--no-deps", str(ROOT)],
    ):
        subprocess.run(
            [str(uv_binary), "pip", "install", "--quiet", "--python", str(where / "bin/python"),
             *args],
            check=True, timeout=600, cwd=where.parent,
        )  # fmt: skip
    # Readable by the unprivileged user the command runs as.
    for path in (where, *where.parents):
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o005)
    return where


def _under_the_units_exec_rules(venv: Path, tmp: Path, *argv: str) -> list[str]:
    exec_paths = [
        str(venv) if path == "/opt/atopos/.venv" else path
        for path in (path.lstrip("-") for path in _unit_values(NODE_UNIT, "ExecPaths"))
    ]
    new_root = tmp / "root"
    new_root.mkdir(exist_ok=True)
    return [
        "unshare", "--mount", "--fork", "sh", "-c", _NO_EXEC_ROOT, "no-exec-root",
        str(new_root), str(len(exec_paths)), *exec_paths, *argv,
    ]  # fmt: skip


def test_under_the_units_exec_rules_the_node_serves_and_no_shell_runs(
    copied_venv: Path, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    shell = subprocess.run(
        _under_the_units_exec_rules(
            copied_venv, tmp_path, str(copied_venv / "bin" / "python"), "-c",
            "import subprocess; subprocess.run(['/bin/sh', '-c', 'true'])",
        ),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.returncode != 0
    assert "PermissionError" in shell.stderr, shell.stderr
    system_python = subprocess.run(
        _under_the_units_exec_rules(copied_venv, tmp_path, "/usr/bin/python3", "-c", "1"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert system_python.returncode == 126, system_python.stderr

    port = _closed_port()
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        node = subprocess.Popen(
            _under_the_units_exec_rules(
                copied_venv, tmp_path, str(copied_venv / "bin" / "atopos"), "serve",
                "--host", "127.0.0.1", "--port", str(port), "--data", "/data",
            ),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}", node, timeout=60)
    except (RuntimeError, TimeoutError) as error:
        raise AssertionError(log_path.read_text(errors="replace")) from error
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=30)
