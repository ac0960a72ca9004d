"""Start real Atopos servers for tests: a subprocess on a loopback port, or in-process
uvicorn with an injected clock. Readiness is polled on /healthz, never slept for."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from bench.harness import end_process, free_port
from starlette.types import ASGIApp

from atopos.server.app import create_app
from atopos.server.config import ServerConfig
from atopos.server.runner import uvicorn_config
from atopos.server.writer_process import WRITER_PROCESS_NAME
from atopos.storage.port import SecretStore

ATOPOS = str(Path(sys.executable).with_name("atopos"))


def wait_healthy(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.02)  # polling interval, not a wait for readiness
    raise TimeoutError(f"{url} did not become healthy")


@dataclasses.dataclass
class ServerProcess:
    """`atopos serve` as a child process; its stdout+stderr go to `log_path`."""

    data_dir: Path
    log_path: Path
    host: str = "127.0.0.1"
    pow_bits: int = 0
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # Runs in the child before `atopos serve` starts (resource limits, signal dispositions).
    preexec: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ServerProcess:
        self.port = self.port or free_port(self.host)
        env = {
            **os.environ,
            "ATOPOS_RATE_LIMIT": "0",
            # Tests play many clients from one address (races of hundreds of requests).
            "ATOPOS_MAX_CONNECTIONS_PER_CLIENT": "1000",
            "ATOPOS_LOG_LEVEL": "debug",
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                ATOPOS,
                "serve",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data",
                str(self.data_dir),
                "--pow-bits",
                str(self.pow_bits),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=self.preexec,
        )
        log.close()
        wait_healthy(self.url, self.process)
        return self

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=15)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def fixture_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any
) -> Iterator[ServerProcess]:
    """A started server (`options` for ServerProcess) in a fresh directory `name`, stopped
    when the fixture ends: `yield from` it in a module or session fixture."""
    root = tmp_path_factory.mktemp(name)
    process = ServerProcess(data_dir=root / "data", log_path=root / "server.log", **options)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def serve_with_a_long_tmpdir(tmp_path: Path, *serve_args: str) -> tuple[Path, str]:
    """`atopos serve ARGS` with a $TMPDIR (and no $XDG_RUNTIME_DIR) whose own path already
    fills the 107 bytes of a Unix socket's path: the node must exit 2 and leave the directory
    empty. The directory and the last line the node wrote to stderr."""
    long_dir = tmp_path / ("t" * max(1, 107 - len(str(tmp_path))))
    long_dir.mkdir()
    done = subprocess.run(
        [ATOPOS, "serve", *serve_args, "--port", str(free_port()), "--data", str(tmp_path)],
        env={**os.environ, "TMPDIR": str(long_dir), "XDG_RUNTIME_DIR": ""},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert not any(long_dir.iterdir())
    return long_dir, done.stderr.decode().strip().splitlines()[-1]


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


@contextlib.contextmanager
def in_process_server(
    config: ServerConfig,
    clock: ManualClock,
    store: SecretStore | None = None,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    **app_options: Any,
) -> Iterator[str]:
    """uvicorn in a thread of the test process, on a loopback port, with an injected clock
    (and, when given, a store the test can also reach, e.g. to sweep it, and a test-only
    ASGI wrapper around the app, e.g. tests/older_servers.py; `app_options` go to
    create_app)."""
    port = free_port(config.host)
    app: ASGIApp = create_app(config, clock=clock, store=store, **app_options)
    if wrap is not None:
        app = wrap(app)
    server = uvicorn.Server(uvicorn_config(app, config.host, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://{config.host}:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def children_of(server: ServerProcess) -> list[int]:
    """The processes the server's process forked (a node's supervisor: workers and writer)."""
    assert server.process is not None
    pid = server.process.pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            children.extend(int(c) for c in (task / "children").read_text().split())
    return children


def is_writer_process(pid: int) -> bool:
    """Whether `pid` is a node's SQLite writer process (server/writer_process.py)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == WRITER_PROCESS_NAME
    except FileNotFoundError:
        return False
