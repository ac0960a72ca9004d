"""The files of deploy/ run for real in tests: `redis-server` started from
deploy/redis/*.conf and `caddy run` from deploy/Caddyfile, on loopback ports with their
files in a temporary directory. Only what a test machine cannot have is replaced (the data
directory, the ports, the pid file); readiness is polled, never slept for."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from bench.harness import end_process

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CADDYFILE = DEPLOY / "Caddyfile"
CADDY = shutil.which("caddy") or "caddy"
REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def poll(ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, redis.RedisError, httpx.HTTPError):
            if ready():
                return
        time.sleep(0.02)  # polling interval, not a wait for readiness
    raise TimeoutError(f"{what} did not become ready")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blanks out)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


@dataclasses.dataclass
class DeployedRedis:
    """`redis-server` from deploy/redis/<name>.conf, with only `dir`, `port`, `pidfile` and
    the password file's path replaced so that it runs unprivileged in a temporary directory.
    The password file is written as the install steps of docs/operations.md write it."""

    name: str
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    password: str = dataclasses.field(default_factory=lambda: os.urandom(32).hex())

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def password_file(self) -> Path:
        return self.directory / f"redis-{self.name}.password.conf"

    def client(self, *, password: str | None = None) -> redis.Redis:
        """A client with the password (or another one, or none: `password=""`)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password if password is None else password or None,
            socket_timeout=5,
        )

    def render(self) -> Path:
        text = (DEPLOY / "redis" / f"{self.name}.conf").read_text()
        self.password_file.write_text(f"requirepass {self.password}\n")
        self.password_file.chmod(0o640)
        for key, value in (
            ("dir", str(self.data_dir)),
            ("port", str(self.port)),
            ("pidfile", str(self.directory / "redis.pid")),
            ("include", str(self.password_file)),
        ):
            text, count = re.subn(rf"(?m)^{key} .*$", f"{key} {value}", text)
            assert count == 1, f"{self.name}.conf must set {key} exactly once"
        path = self.directory / f"{self.name}.conf"
        path.write_text(text)
        return path

    def start(self) -> DeployedRedis:
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.render()
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen([REDIS_SERVER, str(conf)], stdout=log, stderr=log)
        log.close()

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server ({self.name}) exited: {self.output()}")
            with self.client() as client:
                return bool(client.ping())

        try:
            poll(answers, f"redis-server ({self.name})")
        except BaseException:
            self.stop()
            raise
        return self

    def output(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=15)


def caddy_environment(directory: Path, **settings: str) -> dict[str, str]:
    """The environment `caddy` gets: its own HOME and XDG directories (no file of the
    machine's user is touched) and the Caddyfile's placeholders."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ATOPOS_", "XDG_", "CADDY"))
    }
    env.update(
        HOME=str(directory / "home"),
        XDG_DATA_HOME=str(directory / "data"),
        XDG_CONFIG_HOME=str(directory / "config"),
        **settings,
    )
    return env


@dataclasses.dataclass
class CaddyServer:
    """`caddy run` with deploy/Caddyfile, TLS from given files, on 127.0.0.1 only."""

    directory: Path
    upstreams: list[str]
    cert_path: Path
    key_path: Path
    ca_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # The admin endpoint (ATOPOS_CADDY_ADMIN): off unless a test asks for one.
    admin: str = "off"
    http_port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The environment `caddy run` gets (and `caddy reload` needs the same)."""
        return caddy_environment(
            self.directory,
            ATOPOS_SITE=f"127.0.0.1:{self.port}",
            ATOPOS_UPSTREAMS=" ".join(self.upstreams),
            ATOPOS_TLS_MODE="files",
            ATOPOS_TLS_CERT=str(self.cert_path),
            ATOPOS_TLS_KEY=str(self.key_path),
            ATOPOS_ACCESS_LOG=str(self.access_log),
            ATOPOS_CADDY_ADMIN=self.admin,
            ATOPOS_BIND="127.0.0.1",
            ATOPOS_HTTPS_PORT=str(self.port),
            ATOPOS_HTTP_PORT=str(self.http_port),
        )

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    @property
    def log_path(self) -> Path:
        return self.directory / "caddy.log"

    def start(self) -> CaddyServer:
        self.port = self.port or free_port()
        self.http_port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # The umask of the drop-in (UMask=0077), which the admin socket's mode comes from.
        self.process = subprocess.Popen(
            [CADDY, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            umask=0o077,
        )
        log.close()
        verify = ssl.create_default_context(cafile=str(self.ca_path))

        def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"caddy exited: {self.log_path.read_text()}")
            return httpx.get(f"{self.url}/healthz", verify=verify, timeout=2).status_code == 200

        try:
            poll(healthy, "caddy")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=15)
