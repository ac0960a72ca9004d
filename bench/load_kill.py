"""Mixed load with `kill -9` and a restart in the middle: is anything lost or revealed twice?

    .venv/bin/python bench/load_kill.py [--seconds 60] [--concurrency 48] [--kill-at 0.5]

Starts `atopos serve` (SQLite in a temporary directory, PoW at 0 bits, rate limits off) on a
free loopback port and drives it from one asyncio process (the server keeps the machine's
other core) with a mix of creates (one or three views), full reveal flows (challenge,
ticket, reveal, sometimes a replay of the ticket) and status reads. Part way through it kills
the server with SIGKILL, starts it again on the same data and keeps going.

Every create answered 201 is recorded, and every reveal answered 200 (its bytes are checked
against what was uploaded). A reveal cut off by the kill may or may not have taken its view:
it is counted as uncertain. At the end, every recorded secret's status is read back:

- lost: a secret whose views left are below what the 200s and uncertain reveals explain
  (or that is gone although it must still have a view);
- double reveals: more 200s for a secret than it had views, a replayed ticket answered 200,
  or views left above what the 200s allow (a 200 that consumed nothing);
- errors outside the restart window: any 5xx or connection failure before the kill or more
  than `RESTART_GRACE` seconds after the restarted server answered /healthz.

Prints ONE JSON line with the counts; exits 1 when any of them is not zero.
tests/integration/test_load_kill.py runs the same code and asserts the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file, bench/ would be first on sys.path, where bench/secrets.py stands in for
    # the standard library's `secrets`; the repository root goes there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import httpx

from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.envelope import Metadata, seal
from bench.harness import end_process

__all__ = ["LoadKillConfig", "LoadKillReport", "run_load_kill"]

ATOPOS = str(Path(sys.executable).with_name("atopos"))
OCTETS = {"content-type": "application/octet-stream"}
# After the restarted server first answers /healthz, pooled connections that died with the
# old process may still surface for a moment; failures that late still count as "in the
# restart window".
RESTART_GRACE = 2.0
# Pause of a worker after a connection failure (the server is down): the load generator
# must not spin on a closed port.
RETRY_PAUSE = 0.05
REQUEST_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class LoadKillConfig:
    data_dir: Path
    log_path: Path
    seconds: float = 60.0
    concurrency: int = 48
    # When to kill, as a fraction of `seconds`.
    kill_at: float = 0.5
    # How many finished secrets are revealed once more at the end, to check their bytes
    # survived the restart.
    reveal_sample: int = 200
    seed: int = 1


@dataclasses.dataclass
class LoadKillReport:
    seconds: float
    concurrency: int
    created: int = 0
    created_after_restart: int = 0
    revealed: int = 0
    double_reveals: int = 0
    lost: int = 0
    checked: int = 0
    uncertain_reveals: int = 0
    replays_refused: int = 0
    reveals_after_restart_checked: int = 0
    requests: int = 0
    requests_per_second: float = 0.0
    creates_per_second: float = 0.0
    reveal_flows_per_second: float = 0.0
    restart_seconds: float = 0.0
    # Cores the server used while it was up (1.0 = one CPU busy all the time); with one
    # event loop and one writer thread, about 1 means it was at its capacity.
    server_cpu_cores: float = 0.0
    errors_in_restart_window: int = 0
    errors_outside_restart_window: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return (
            self.double_reveals == 0
            and self.lost == 0
            and self.errors_outside_restart_window == 0
            and not self.problems
        )

    def as_json(self) -> str:
        return json.dumps({"bench": "load_kill", **dataclasses.asdict(self)}, sort_keys=False)


@dataclasses.dataclass
class _Secret:
    id: str
    manage_token: str
    views: int
    digest: bytes
    created_before_kill: bool
    # The secret's access key (docs/protocol/access.md): its proof buys tickets.
    signer: AccessSigner = dataclasses.field(repr=False)
    reveals: int = 0  # answered 200
    uncertain: int = 0  # cut off: the view may or may not have been taken


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    """`atopos serve` that can be killed with SIGKILL and started again on the same data."""

    def __init__(self, config: LoadKillConfig) -> None:
        self._config = config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ATOPOS_RATE_LIMIT": "0", "ATOPOS_LOG_LEVEL": "warning"}
        with self._config.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    ATOPOS,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data",
                    str(self._config.data_dir),
                    "--pow-bits",
                    "0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"atopos serve exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.01)  # the polling interval, not a wait for readiness
        raise TimeoutError("atopos serve did not become healthy")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the running server process has used so far."""
        assert self.process is not None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=15)


class TransportFailed(Exception):
    """The connection failed before a whole response arrived (refused, reset, cut short)."""


class _Connection:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams.

    httpx spends about 2 ms of CPU per request here, which would make the load generator,
    not the server, the bottleneck; this spends a few tens of microseconds. It speaks just
    what the API answers: a status line, headers with Content-Length, a body.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(
                self._request(method, path, body, headers), REQUEST_TIMEOUT
            )
        except (
            OSError,
            EOFError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
        ) as error:
            self.close()
            raise TransportFailed(type(error).__name__) from None

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise ValueError("not an HTTP/1.1 response")
        status = int(head[9:12])
        length, must_close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                must_close = True
        data = await self._reader.readexactly(length) if length else b""
        if must_close:
            self.close()
        return status, data

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class _Load:
    def __init__(self, config: LoadKillConfig, server: _Server) -> None:
        self.config = config
        self.server = server
        self.api = "/api/v1/secrets"
        self.secrets: list[_Secret] = []
        self.statuses: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.reveal_flows = 0
        self.replays_refused = 0
        self.replays_answered = 0
        self.kill_time: float | None = None
        self.healthy_time: float | None = None
        self.server_cpu = 0.0
        self._cpu_at_restart = 0.0
        self.errors_in_window = 0
        self.errors_outside: list[str] = []
        self.problems: list[str] = []

    def connection(self) -> _Connection:
        return _Connection("127.0.0.1", self.server.port)

    # -- bookkeeping ------------------------------------------------------------------------

    def _in_restart_window(self, at: float) -> bool:
        if self.kill_time is None or at < self.kill_time:
            return False
        return self.healthy_time is None or at <= self.healthy_time + RESTART_GRACE

    async def _call(
        self,
        conn: _Connection,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes] | None:
        """One request; None when the connection failed (counted, then a short pause)."""
        self.requests += 1
        route = path.rsplit("/", 1)[-1]
        try:
            status, data = await conn.request(method, path, body, headers)
        except TransportFailed as error:
            self.statuses["connection error"] += 1
            if self._in_restart_window(time.monotonic()):
                self.errors_in_window += 1
            else:
                self.errors_outside.append(f"{method} {route}: {error}")
            await asyncio.sleep(RETRY_PAUSE)
            return None
        self.statuses[str(status)] += 1
        if status >= 500:
            # Only "unavailable" is excused, and only while the server restarts.
            if status == 503 and self._in_restart_window(time.monotonic()):
                self.errors_in_window += 1
            else:
                self.errors_outside.append(f"{method} {route}: {status}")
        return status, data

    async def _json(
        self, conn: _Connection, path: str, payload: dict[str, Any]
    ) -> tuple[int, bytes] | None:
        return await self._call(
            conn, "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )

    # -- the mix ----------------------------------------------------------------------------

    async def _create(self, conn: _Connection, rng: random.Random) -> None:
        views = rng.choice((1, 1, 1, 3))
        content = os.urandom(rng.randrange(8, 200))
        link_key = os.urandom(32)
        body = seal(content, Metadata("text", len(content)), link_key, random_bytes=os.urandom)
        signer = AccessSigner(link_key)
        query = f"views={views}&access_key={b64url_encode(signer.public_key)}"
        answer = await self._call(conn, "POST", f"{self.api}?{query}", body, OCTETS)
        if answer is not None and answer[0] == 201:
            created = json.loads(answer[1])
            self.secrets.append(
                _Secret(
                    created["id"],
                    created["manage_token"],
                    views,
                    hashlib.sha256(body).digest(),
                    created_before_kill=self.kill_time is None,
                    signer=signer,
                )
            )

    async def _reveal_flow(self, conn: _Connection, secret: _Secret, replay: bool) -> bool:
        """challenge -> ticket -> reveal; True when it got the envelope."""
        self.reveal_flows += 1
        base = f"{self.api}/{secret.id}"
        challenge = await self._call(conn, "POST", f"{base}/challenge")
        if challenge is None or challenge[0] != 200:
            return False
        text = json.loads(challenge[1])["challenge"]
        proof = b64url_encode(secret.signer.sign_proof(b64url_decode(secret.id), text))
        trade = {"challenge": text, "nonce": 0, "access_proof": proof}
        ticket = await self._json(conn, f"{base}/ticket", trade)
        if ticket is None or ticket[0] != 200:
            return False
        value = json.loads(ticket[1])["ticket"]
        reveal = await self._json(conn, f"{base}/reveal", {"ticket": value})
        if reveal is None:
            secret.uncertain += 1
            return False
        if reveal[0] != 200:
            return False
        secret.reveals += 1
        if hashlib.sha256(reveal[1]).digest() != secret.digest:
            self.problems.append(f"secret {secret.id[:6]}... came back with other bytes")
        if replay:
            again = await self._json(conn, f"{base}/reveal", {"ticket": value})
            if again is not None and again[0] == 200:
                self.replays_answered += 1
            elif again is not None and again[0] == 403:
                self.replays_refused += 1
        return True

    async def _status(self, conn: _Connection, secret: _Secret) -> tuple[int, bytes] | None:
        return await self._call(
            conn,
            "GET",
            f"{self.api}/{secret.id}/status",
            headers={"Authorization": f"Bearer {secret.manage_token}"},
        )

    async def _worker(self, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        conn = self.connection()
        try:
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.45 or not self.secrets:
                    await self._create(conn, rng)
                elif roll < 0.85:
                    # Mostly recent secrets (so many still have views), sometimes any.
                    pool = self.secrets[-500:] if rng.random() < 0.8 else self.secrets
                    await self._reveal_flow(conn, rng.choice(pool), replay=rng.random() < 0.1)
                else:
                    await self._status(conn, rng.choice(self.secrets))
        finally:
            conn.close()

    async def _kill_and_restart(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        self.server_cpu += self.server.cpu_seconds()
        self.kill_time = time.monotonic()
        await asyncio.to_thread(self.server.kill9)
        await asyncio.to_thread(self.server.start)
        self.healthy_time = time.monotonic()
        self._cpu_at_restart = self.server.cpu_seconds()

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> LoadKillReport:
        config = self.config
        started = time.monotonic()
        deadline = started + config.seconds
        killer = asyncio.create_task(
            self._kill_and_restart(started + config.seconds * config.kill_at)
        )
        await asyncio.gather(
            *(self._worker(config.seed * 1000 + n, deadline) for n in range(config.concurrency)),
            killer,
        )
        elapsed = time.monotonic() - started
        self.server_cpu += self.server.cpu_seconds() - self._cpu_at_restart
        report = LoadKillReport(seconds=round(elapsed, 1), concurrency=config.concurrency)
        report.requests = self.requests
        report.requests_per_second = round(self.requests / elapsed, 1)
        report.statuses = dict(sorted(self.statuses.items()))
        report.created = len(self.secrets)
        report.created_after_restart = sum(not s.created_before_kill for s in self.secrets)
        report.revealed = sum(secret.reveals for secret in self.secrets)
        report.creates_per_second = round(report.created / elapsed, 1)
        report.reveal_flows_per_second = round(self.reveal_flows / elapsed, 1)
        report.uncertain_reveals = sum(secret.uncertain for secret in self.secrets)
        report.replays_refused = self.replays_refused
        assert self.kill_time is not None
        assert self.healthy_time is not None
        report.restart_seconds = round(self.healthy_time - self.kill_time, 2)
        report.server_cpu_cores = round(self.server_cpu / (elapsed - report.restart_seconds), 2)
        report.errors_in_restart_window = self.errors_in_window
        report.errors_outside_restart_window = len(self.errors_outside)
        await self._verify(report)
        report.problems = self.problems + self.errors_outside[:10]
        return report

    async def _verify(self, report: LoadKillReport) -> None:
        """Read every recorded secret back from the restarted server, then reveal a sample
        of those that still have a view and check their bytes."""
        connections: asyncio.Queue[_Connection] = asyncio.Queue()
        for _ in range(self.config.concurrency):
            connections.put_nowait(self.connection())
        left: dict[str, int] = {}
        read_back = 0

        async def status(secret: _Secret) -> None:
            nonlocal read_back
            conn = await connections.get()
            try:
                answer = await self._status(conn, secret)
            finally:
                connections.put_nowait(conn)
            most = secret.views - secret.reveals  # if no uncertain reveal took a view
            least = most - secret.uncertain
            if secret.reveals > secret.views:
                report.double_reveals += secret.reveals - secret.views
                self.problems.append(f"secret {secret.id[:6]}... gave {secret.reveals} views")
            if answer is None or answer[0] not in (200, 404):
                self.problems.append(f"status answered {answer and answer[0]}")
                return
            read_back += 1
            if answer[0] == 404:
                if least > 0:
                    report.lost += 1
                    self.problems.append(f"secret {secret.id[:6]}... lost with {least} views left")
                return
            views_left = json.loads(answer[1])["views_left"]
            left[secret.id] = views_left
            if views_left < least:
                report.lost += 1
                self.problems.append(f"secret {secret.id[:6]}... has {views_left} < {least} views")
            elif views_left > most:
                report.double_reveals += views_left - most
                self.problems.append(f"secret {secret.id[:6]}... gave a view it still has")

        await asyncio.gather(*(status(secret) for secret in self.secrets))
        report.checked = read_back
        report.double_reveals += self.replays_answered
        # The bytes of secrets stored before the kill come back intact after it.
        survivors = [s for s in self.secrets if s.created_before_kill and left.get(s.id, 0) > 0]
        sample = random.Random(self.config.seed).sample(
            survivors, min(len(survivors), self.config.reveal_sample)
        )

        async def reveal(secret: _Secret) -> None:
            conn = await connections.get()
            try:
                if await self._reveal_flow(conn, secret, replay=False):
                    report.reveals_after_restart_checked += 1
            finally:
                connections.put_nowait(conn)

        await asyncio.gather(*(reveal(secret) for secret in sample))
        while not connections.empty():
            connections.get_nowait().close()
        if report.reveals_after_restart_checked != len(sample):
            self.problems.append(
                f"only {report.reveals_after_restart_checked} of {len(sample)} sampled "
                "secrets could be revealed after the restart"
            )


def run_load_kill(config: LoadKillConfig) -> LoadKillReport:
    """Start the server, run the load with one kill -9 and restart, verify; always stops
    the server."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    server = _Server(config)
    server.start()
    try:
        return asyncio.run(_Load(config, server).run())
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of --seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atopos-load-kill-") as scratch:
        report = run_load_kill(
            LoadKillConfig(
                data_dir=Path(scratch) / "data",
                log_path=Path(scratch) / "server.log",
                seconds=args.seconds,
                concurrency=args.concurrency,
                kill_at=args.kill_at,
                seed=args.seed,
            )
        )
    print(report.as_json(), flush=True)
    return 0 if report.is_clean else 1


if __name__ == "__main__":
    sys.exit(main())
