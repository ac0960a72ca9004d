"""Start real `redis-server` processes for tests: one durable Redis, one without persistence
(rate-limit counters), or a 3-master Redis Cluster, on loopback ports with their files in a
temporary directory; and pairs of `atopos serve` nodes sharing one. Readiness is polled
(PING, CLUSTER INFO, /healthz), never slept for."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from bench.harness import end_process

from tests.servers import ServerProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"


def _poll(ready: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if ready():  # type: ignore[operator]
                return
        time.sleep(0.01)  # polling interval, not a wait for readiness
    raise TimeoutError(f"{what} did not become ready")


@dataclasses.dataclass
class RedisServer:
    """`redis-server` with AOF on and `appendfsync always` (a 201 must survive kill -9), or,
    from `ephemeral`, with no persistence at all (for rate-limit counters)."""

    directory: Path
    port: int = 0
    appendfsync: str = "always"
    appendonly: bool = True
    # RDB snapshot points (`save`); "" takes none.
    save: str = ""
    is_cluster_node: bool = False
    bus_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.port = self.port or free_port()
        self.bus_port = self.bus_port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--save",
            self.save,
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.is_cluster_node:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.directory / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                # The default bus port (port + 10000) may be taken or out of range.
                "--cluster-port",
                str(self.bus_port),
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        with self.client() as client:

            def answers() -> bool:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                # PING answers LOADING while the AOF is replayed after a restart.
                return bool(client.ping())

            _poll(answers, f"redis-server on port {self.port}")

    @classmethod
    def ephemeral(cls, directory: Path) -> RedisServer:
        """Not started: a Redis that writes nothing to disk (`--save "" --appendonly no`),
        as deploy/redis/atopos-ephemeral.conf, where rate-limit counters may go."""
        return cls(directory, appendonly=False, save="")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=15)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def limit_keys(self) -> list[bytes]:
        """The rate-limit counters this Redis holds."""
        with self.client() as client:
            return list(client.scan_iter(match="atopos-limits*"))


@dataclasses.dataclass
class RedisClusterServers:
    """Three masters, no replicas, joined with `redis-cli --cluster create`; durable as
    `RedisServer`, or without persistence (`appendonly=False`)."""

    directory: Path
    nodes: list[RedisServer] = dataclasses.field(default_factory=list)
    appendonly: bool = True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterServers:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for n in range(3):
            self.nodes.append(
                RedisServer(
                    self.directory / f"node{n}", appendonly=self.appendonly, is_cluster_node=True
                )
            )
            self.nodes[-1].start()
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
        for node in self.nodes:
            with node.client() as client:

                def is_ok(client: redis.Redis = client) -> bool:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    return "cluster_state:ok" in text

                _poll(is_ok, f"cluster node on port {node.port}")

    def flush(self) -> None:
        for node in self.nodes:
            node.flush()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def write_key_file(path: Path, *keys: bytes) -> Path:
    """A node key file (server/keyfile.py): one base64url key a line, mode 0600."""
    path.write_text("".join(base64.urlsafe_b64encode(k).rstrip(b"=").decode() + "\n" for k in keys))
    path.chmod(0o600)
    return path


@dataclasses.dataclass
class Nodes:
    """Two `atopos serve` nodes on one storage."""

    a: ServerProcess
    b: ServerProcess

    def __iter__(self) -> Iterator[ServerProcess]:
        return iter((self.a, self.b))


def start_all(*processes: ServerProcess) -> None:
    """Start servers in parallel (each start polls its own /healthz); all or none."""
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
        starts = [pool.submit(process.start) for process in processes]
        errors = [start.exception() for start in starts]
    if any(errors):
        for process in processes:
            process.stop()
        raise next(error for error in errors if error is not None)


def start_nodes(tmp_path: Path, storage_url: str, key_file: Path, **env: str) -> Nodes:
    """Two nodes on one storage, with one key file."""
    nodes = Nodes(
        *(
            ServerProcess(
                data_dir=tmp_path / name,
                log_path=tmp_path / f"{name}.log",
                env={"ATOPOS_STORAGE": storage_url, "ATOPOS_KEY_FILE": str(key_file), **env},
            )
            for name in ("a", "b")
        )
    )
    start_all(*nodes)
    return nodes
