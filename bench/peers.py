"""Atopos next to a peer, snappass, in one run on this machine with the same wrk parameters.

    .venv/bin/python bench/peers.py [--duration 10] [--connections 4] [--json-out PATH]
                                    [--systems atopos_sqlite,atopos_redis,atopos_redis_2nodes,
                                               snappass_1w,snappass_2w]
                                    [--rounds 1] [--snappass-redis-fsync]

Every system runs in turn on fresh processes bound to 127.0.0.1: creates/s, then read
flows/s on secrets made beforehand (bench/wrk/*.lua), with latency, errors, memory and CPU.
snappass (PyPI, with gunicorn) is installed into bench/.peers-venv on first use and served
by gunicorn sync workers against its own redis-server. Atopos runs on SQLite, as one node on
Redis, and as two nodes on one Redis (wrk's threads alternate between the nodes). A system is
one function in SYSTEMS; ratios atopos/snappass, and between the Atopos set-ups, are computed
for every pair present. Prints ONE JSON line (a table of the figures goes to stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file: the repository root goes first on sys.path so `bench.*` imports work.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import base64
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    REPO,
    LoadPlan,
    Phases,
    Processes,
    create_then_flow,
    free_port,
    interrupt_on_signals,
    log,
    machine_info,
    process_memory_kib,
    start_atopos,
    wait_http,
)
from bench.secrets import atopos_phases, reveal_flow

__all__ = ["SYSTEMS", "main"]

PEERS_VENV = REPO / "bench" / ".peers-venv"
PEER_PACKAGES = ("snappass==1.6.2", "gunicorn==27.0.1")
DEFAULT_SYSTEMS = (
    "atopos_sqlite",
    "atopos_redis",
    "atopos_redis_2nodes",
    "snappass_1w",
    "snappass_2w",
)


@dataclasses.dataclass(frozen=True)
class Run:
    """What every system function gets: where to put processes and files, and the load."""

    procs: Processes
    work: Path
    connections: int
    duration: int
    warmup: int
    redis_fsync: bool  # snappass's Redis with appendfsync always (Atopos fsyncs every commit)


SystemFn = Callable[[Run], dict[str, Any]]


def figures(phases: Phases, read_flow: str, requests_per_flow: int) -> dict[str, Any]:
    """The comparable figures of one system (the Lua scripts share counter names)."""
    create, flow = phases.create, phases.flow
    return {
        "creates_per_s": round(create.per_s("ok"), 1),
        "read_flows_per_s": round(flow.per_s("flows"), 1),
        "read_flow": read_flow,
        "requests_per_flow": requests_per_flow,
        "create_latency_ms": create.latency_ms(),
        "flow_latency_ms_per_request": flow.latency_ms(),
        "non_2xx": create.total("bad") + flow.total("bad"),
        "wrong_bodies": flow.total("bad_body"),
        "socket_errors": sum(create.socket_errors.values()) + sum(flow.socket_errors.values()),
        "ran_out_of_secrets": flow.total("exhausted") > 0,
        "cpu_cores": {"create": create.cpu, "flow": flow.cpu},
    }


def tree_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS summed over a process and its children (gunicorn master + workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids.extend(int(c) for c in (task / "children").read_text().split())
    total = {"vmrss_kib": 0, "vmhwm_kib": 0, "processes": len(pids)}
    for p in pids:
        for key, value in process_memory_kib(p).items():
            total[key] += value
    return total


# -- Redis ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RedisServer:
    proc: subprocess.Popen[bytes]
    port: int


def start_redis(procs: Processes, name: str, directory: Path, *, fsync: bool) -> RedisServer:
    """A private redis-server on a loopback port. Default persistence is Redis's own
    (RDB snapshots, no AOF); `fsync` turns on the AOF with an fsync before every reply."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)]
    argv += ["--save", "3600 1 300 100 60 10000", "--appendonly", "no"]
    if fsync:
        argv += ["--appendonly", "yes", "--appendfsync", "always"]
    proc = procs.start(name, argv)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited:\n{procs.log_tail(name)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return RedisServer(proc, port)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not answer PING")
        time.sleep(0.02)  # the poll interval, not a guess at readiness


# -- Atopos --------------------------------------------------------------------------------


def _atopos(
    run: Run,
    *,
    name: str,
    extra_env: dict[str, str] | None = None,
    watch: dict[str, int] | None = None,
    nodes: int = 1,
) -> dict[str, Any]:
    """`nodes` Atopos processes on one store; wrk's threads are spread over them."""
    servers = [
        start_atopos(run.procs, run.work / f"data-{k}", name=f"{name}-{k}", extra_env=extra_env)
        for k in range(nodes)
    ]
    server = servers[0]
    others = {f"server{k}": s.proc.pid for k, s in enumerate(servers[1:], 2)}
    phases = atopos_phases(
        server,
        run.work,
        connections=run.connections,
        duration=run.duration,
        warmup=run.warmup,
        watch={**others, **(watch or {})},
        env={"BENCH_ADDRS": ",".join(f"127.0.0.1:{s.port}" for s in servers)},
    )
    requests_per_flow, flow = reveal_flow()
    result = figures(phases, flow, requests_per_flow)
    result["memory_kib"] = {
        ("server" if k == 0 else f"server{k + 1}"): tree_memory_kib(s.proc.pid)
        for k, s in enumerate(servers)
    }
    return result


def atopos_sqlite(run: Run) -> dict[str, Any]:
    """Atopos with one documented flag, --workers 2 (ATOPOS_WORKERS): two processes on one
    port and one SQLite file (WAL, synchronous=FULL, group commit in each)."""
    result = _atopos(run, name="atopos-sqlite", extra_env={"ATOPOS_WORKERS": "2"})
    result["setup"] = "atopos serve --workers 2 (uvicorn + uvloop), one SQLite store"
    return result


def atopos_sqlite_1w(run: Run) -> dict[str, Any]:
    """Atopos as `make serve` runs it: one process, SQLite."""
    result = _atopos(run, name="atopos-sqlite-1w", extra_env={"ATOPOS_WORKERS": "1"})
    result["setup"] = "atopos serve, one process (uvicorn + uvloop), SQLite store"
    return result


def atopos_on_redis(nodes: int) -> SystemFn:
    """Atopos on one Redis (appendfsync always); with 2 nodes they share a key file, as
    deploy/ runs them, and each wrk thread keeps to one node (like a sticky balancer)."""

    def run_atopos_redis(run: Run) -> dict[str, Any]:
        redis = start_redis(run.procs, "redis-atopos", run.work / "redis", fsync=True)
        key_file = run.work / "atopos.key"
        key_file.touch(mode=0o600)
        key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())
        result = _atopos(
            run,
            name="atopos-redis",
            extra_env={
                "ATOPOS_STORAGE": f"redis://127.0.0.1:{redis.port}/0",
                "ATOPOS_KEY_FILE": str(key_file),
            },
            watch={"redis": redis.proc.pid},
            nodes=nodes,
        )
        result["memory_kib"]["redis"] = process_memory_kib(redis.proc.pid)
        processes = "one process" if nodes == 1 else f"{nodes} processes (one key file)"
        result["setup"] = f"atopos serve, {processes}, one Redis store (appendfsync always)"
        return result

    return run_atopos_redis


# -- snappass ------------------------------------------------------------------------------


def peers_venv() -> Path:
    """bench/.peers-venv with snappass and gunicorn (git-ignored), made on first use."""
    python = PEERS_VENV / "bin" / "python"
    probe = [str(python), "-c", "import snappass.main, gunicorn"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return PEERS_VENV
    log(f"installing {', '.join(PEER_PACKAGES)} into {PEERS_VENV}")
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True, timeout=300)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True, timeout=600
    )
    subprocess.run(probe, check=True, timeout=60)
    return PEERS_VENV


def peer_versions(venv: Path) -> dict[str, str]:
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    wanted = {"snappass", "gunicorn", "flask", "redis", "cryptography"}
    pairs = (line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    return {name: version for name, version in pairs if name.lower() in wanted}


def snappass(workers: int) -> SystemFn:
    def run_snappass(run: Run) -> dict[str, Any]:
        venv = peers_venv()
        redis = start_redis(
            run.procs, f"redis-snappass-{workers}w", run.work / "redis", fsync=run.redis_fsync
        )
        port = free_port()
        name = f"snappass-{workers}w"
        argv = [str(venv / "bin" / "gunicorn"), "--workers", str(workers)]
        argv += ["--worker-class", "sync", "--bind", f"127.0.0.1:{port}"]
        argv += ["--log-level", "warning", "snappass.main:app"]
        env = {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis.port),
            "NO_SSL": "True",
            "SECRET_KEY": os.urandom(16).hex(),
            "PYTHONWARNINGS": "ignore::DeprecationWarning",  # snappass imports distutils
        }
        app = run.procs.start(name, argv, env)
        try:
            wait_http("127.0.0.1", port, "/", app)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{run.procs.log_tail(name)}") from None
        plan = LoadPlan(
            url=f"http://127.0.0.1:{port}",
            connections=run.connections,
            duration=run.duration,
            warmup=run.warmup,
            work=run.work,
            env={},
            watch={"app": app.pid, "redis": redis.proc.pid},
        )
        phases = create_then_flow(plan, "snappass_create.lua", "snappass_flow.lua")
        result = figures(
            phases,
            "GET /<key> (preview page) + POST /<key> (reveal page with the secret)",
            2,
        )
        result["memory_kib"] = {
            "app": tree_memory_kib(app.pid),
            "redis": process_memory_kib(redis.proc.pid),
        }
        result["setup"] = f"snappass under gunicorn, {workers} sync worker(s), Redis " + (
            "appendfsync always" if run.redis_fsync else "default persistence (RDB, no AOF)"
        )
        result["versions"] = peer_versions(venv)
        return result

    return run_snappass


# The systems, by name. A new one (say Atopos on Valkey) is one more function here.
SYSTEMS: dict[str, SystemFn] = {
    "atopos_sqlite": atopos_sqlite,
    "atopos_sqlite_1w": atopos_sqlite_1w,
    "snappass_1w": snappass(1),
    "snappass_2w": snappass(2),
    "atopos_redis": atopos_on_redis(1),
    "atopos_redis_2nodes": atopos_on_redis(2),
}


RATED = ("creates_per_s", "read_flows_per_s")


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """x/y of creates and read flows: every Atopos system over every snappass one, and every
    Atopos system over each Atopos system that ran before it (Redis over SQLite, two nodes
    over one)."""
    names = list(results)
    ours = [n for n in names if n.startswith("atopos")]
    peers = [n for n in names if n.startswith("snappass")]
    pairs = [(a, p) for a in ours for p in peers]
    pairs += [(a, b) for i, a in enumerate(ours) for b in ours[:i]]
    return {
        f"{a}/{b}": {
            key: round(results[a][key] / results[b][key], 2) if results[b][key] else None
            for key in RATED
        }
        for a, b in pairs
    }


def summary(result: dict[str, Any]) -> list[str]:
    """The figures and ratios as a small text table, for the terminal (stderr)."""
    lines = [f"{'system':<22}{'creates/s':>12}{'flows/s':>12}"]
    for name, figures_ in result["systems"].items():
        lines.append(
            f"{name:<22}{figures_['creates_per_s']:>12,.0f}{figures_['read_flows_per_s']:>12,.0f}"
        )
    lines.append(f"{'ratio':<44}{'creates':>10}{'flows':>10}")
    for pair, values in result["ratios"].items():
        shown = [f"{v:>10.2f}" if v is not None else f"{'-':>10}" for v in values.values()]
        lines.append(f"{pair:<44}{''.join(shown)}")
    return lines


def median_of_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's figures over several rounds: the median rates, and every round."""
    if len(runs) == 1:
        return runs[0]
    return {
        "creates_per_s": round(statistics.median(r["creates_per_s"] for r in runs), 1),
        "read_flows_per_s": round(statistics.median(r["read_flows_per_s"] for r in runs), 1),
        "read_flow": runs[0]["read_flow"],
        "requests_per_flow": runs[0]["requests_per_flow"],
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "wrong_bodies": sum(r["wrong_bodies"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "ran_out_of_secrets": any(r["ran_out_of_secrets"] for r in runs),
        "setup": runs[0]["setup"],
        "rounds": runs,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.systems}
    with tempfile.TemporaryDirectory(prefix="atopos-peers-") as tmp:
        machine = machine_info(Path(tmp))
        # Rounds interleave the systems (A B C A B C ...), so a slow spell of the machine
        # does not land on one system only.
        for round_ in range(1, args.rounds + 1):
            for name in args.systems:
                log(f"== {name} (round {round_} of {args.rounds})")
                work = Path(tmp) / f"{name}-{round_}"
                work.mkdir()
                # Each system's processes end before the next one starts (and on any error).
                with Processes(work) as procs:
                    load = Run(
                        procs,
                        work,
                        args.connections,
                        args.duration,
                        args.warmup,
                        args.snappass_redis_fsync,
                    )
                    runs[name].append(SYSTEMS[name](load))
    results = {name: median_of_rounds(figures_) for name, figures_ in runs.items()}
    return {
        "benchmark": "atopos-peers",
        "params": {
            "duration_s": args.duration,
            "connections": args.connections,
            "wrk_threads": args.connections,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "plaintext_bytes": 28,
            "snappass_redis_fsync": args.snappass_redis_fsync,
        },
        "systems": results,
        "ratios": ratios(results),
        "machine": machine,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured phase")
    parser.add_argument("--connections", type=int, default=4, help="wrk threads = connections")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured creates")
    parser.add_argument("--json-out", type=Path, help="also write the JSON line to this file")
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds per system; medians reported"
    )
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated, of: {', '.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--snappass-redis-fsync",
        action="store_true",
        help="run snappass's Redis with appendfsync always (durable like Atopos's SQLite)",
    )
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    if not 1 <= args.duration <= 120 or not 1 <= args.connections <= 256 or args.warmup < 0:
        parser.error("--duration 1..120, --connections 1..256, --warmup >= 0")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds 1..10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    try:
        result = run(args)
    except KeyboardInterrupt:
        log("interrupted; every process we started is stopped")
        return 130
    for text in summary(result):
        log(text)
    line = json.dumps(result, separators=(",", ":"))
    print(line, flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    problems = [
        name
        for name, figures_ in result["systems"].items()
        if figures_["non_2xx"] or figures_["socket_errors"] or figures_["ran_out_of_secrets"]
    ]
    if problems:
        log(f"errors or too few secrets in: {', '.join(problems)} (see the JSON line)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
