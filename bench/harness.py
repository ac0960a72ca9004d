"""Shared machinery of the benchmarks: processes on loopback, wrk runs, figures.

Every process a benchmark starts goes through `Processes`, which ends all of them when its
`with` block is left (normally, on an exception or on Ctrl-C / SIGTERM). Every wrk run is
bounded by its `-d` duration and, as a backstop, by a subprocess timeout.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import json
import math
import os
import platform
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = [
    "REPO",
    "WRK_DIR",
    "AtoposServer",
    "LoadPlan",
    "Phases",
    "Processes",
    "WrkResult",
    "atopos_envelope",
    "create_then_flow",
    "end_process",
    "free_port",
    "fsync_latency_us",
    "gather_lines",
    "interrupt_on_signals",
    "log",
    "machine_info",
    "process_memory_kib",
    "profile_top",
    "run_wrk",
    "start_atopos",
    "wait_http",
    "write_slices",
]

REPO = Path(__file__).resolve().parent.parent
WRK_DIR = REPO / "bench" / "wrk"
# wrk's own default is 2 s; a slow fsync must show in the latency, not as a socket error.
WRK_TIMEOUT = "10s"
PLAINTEXT = b"correct horse battery staple"


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries the one JSON line."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so `with` blocks tear everything down
    (SIGINT too when a non-interactive shell started us with it ignored)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` (127.0.0.1, or an IPv6 address such as ::1) right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- processes ---------------------------------------------------------------------------


class Processes:
    """The processes of one benchmark; leaving the `with` block ends every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log_path = self._log_dir / f"{name}.log"
        with open(log_path, "wb") as log_file:
            # A session of its own: Ctrl-C reaches only us, and we end the children in order.
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self._started.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """End one process: SIGTERM, then SIGKILL after 10 s."""
        end_process(proc)
        self._started = [(n, p) for n, p in self._started if p is not proc]

    def close(self) -> None:
        """End every process still running, the last started first; one that will not
        die does not keep the others alive."""
        for name, proc in reversed(list(self._started)):
            try:
                self.stop(proc)
            except (OSError, subprocess.SubprocessError) as exc:
                log(f"could not stop {name} (pid {proc.pid}): {exc}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self._log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def end_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_http(
    url_host: str,
    port: int,
    path: str,
    proc: subprocess.Popen[bytes],
    *,
    timeout: float = 30.0,
    expect: int = 200,
) -> None:
    """Poll `GET path` until it answers `expect`; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        conn = http.client.HTTPConnection(url_host, port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == expect:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url_host}:{port}{path} not ready after {timeout:.0f} s")
        time.sleep(0.02)  # the poll interval, not a guess at readiness


def process_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB, from /proc/<pid>/status."""
    figures: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key.lower() + "_kib"] = int(value.split()[0])
    return figures


# -- Atopos ------------------------------------------------------------------------------


def atopos_envelope() -> bytes:
    """One valid envelope, as the CLI would upload it (568 bytes for this plaintext)."""
    from atopos.crypto.envelope import Metadata, seal

    return seal(
        PLAINTEXT,
        Metadata(kind="text", size=len(PLAINTEXT)),
        os.urandom(32),
        random_bytes=os.urandom,
    )


@dataclasses.dataclass(frozen=True)
class AtoposServer:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "atopos.db"

    def db_counts(self) -> dict[str, int]:
        """Rows of the live store, read through a read-only connection (WAL: no blocking)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            secrets = conn.execute("SELECT count(*) FROM secrets").fetchone()[0]
            tickets = conn.execute("SELECT count(*) FROM used_tickets").fetchone()[0]
        finally:
            conn.close()
        return {"secrets": secrets, "used_tickets": tickets}


def start_atopos(
    procs: Processes,
    data_dir: Path,
    *,
    name: str = "atopos",
    extra_env: Mapping[str, str] | None = None,
) -> AtoposServer:
    """`atopos serve` on a free loopback port: PoW off, rate limits off, warnings only."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "atopos"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data",
        str(data_dir),
        "--pow-bits",
        "0",
    ]
    env = {"ATOPOS_RATE_LIMIT": "0", "ATOPOS_LOG_LEVEL": "warning", **(extra_env or {})}
    proc = procs.start(name, argv, env)
    try:
        wait_http("127.0.0.1", port, "/healthz", proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{procs.log_tail(name)}") from None
    return AtoposServer(proc, port, data_dir)


# -- CPU accounting ----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _task_ticks(pid: int) -> dict[int, int]:
    """utime + stime of every thread of one process, by thread id."""
    ticks: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


def _tree(pid: int) -> list[int]:
    """A process and its descendants (gunicorn's master and workers)."""
    found = [pid]
    for current in found:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


@dataclasses.dataclass(frozen=True)
class _CpuSnapshot:
    at: float
    machine: tuple[int, int]
    children: float  # CPU seconds of our reaped children (wrk)
    watched: dict[str, dict[int, dict[int, int]]]  # name -> pid -> tid -> ticks
    names: dict[int, str] = dataclasses.field(default_factory=dict)  # pid -> /proc comm


def _cpu_snapshot(watch: Mapping[str, int]) -> _CpuSnapshot:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    trees = {name: _tree(pid) for name, pid in watch.items()}
    return _CpuSnapshot(
        at=time.monotonic(),
        machine=_machine_ticks(),
        children=usage.ru_utime + usage.ru_stime,
        watched={name: {p: _task_ticks(p) for p in tree} for name, tree in trees.items()},
        names={p: _comm(p) for tree in trees.values() for p in tree},
    )


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _process_cores(
    before: _CpuSnapshot, after: _CpuSnapshot, name: str, seconds: float
) -> list[tuple[str, float]]:
    """(process name, cores) of each process of `name`'s tree, busiest first."""
    shares = []
    for pid, threads in after.watched[name].items():
        old = before.watched[name].get(pid, {})
        ticks = sum(t - old.get(tid, 0) for tid, t in threads.items())
        shares.append((after.names.get(pid, "?"), round(ticks / _TICK / seconds, 2)))
    return sorted(shares, key=lambda share: -share[1])


def _cpu_report(
    before: _CpuSnapshot, after: _CpuSnapshot, watch: Mapping[str, int]
) -> dict[str, Any]:
    """Cores used during a run (1.0 = one CPU busy all the time) by whom."""
    seconds = after.at - before.at
    busy = (after.machine[0] - before.machine[0]) / _TICK / seconds
    load = (after.children - before.children) / seconds
    report: dict[str, Any] = {"machine_busy_cores": round(busy, 2), "wrk_cores": round(load, 2)}
    accounted = load
    for name, root in watch.items():
        total = main = 0
        for pid, threads in after.watched[name].items():
            old = before.watched[name].get(pid, {})
            for tid, ticks in threads.items():
                delta = ticks - old.get(tid, 0)
                total += delta
                if tid == root:
                    main += delta
        cores = total / _TICK / seconds
        accounted += cores
        report[name] = {"cores": round(cores, 2)}
        if len(after.watched[name]) == 1:  # one process: how much of it is the main thread
            report[name]["main_thread_cores"] = round(main / _TICK / seconds, 2)
        else:
            report[name]["processes"] = len(after.watched[name])
            # Each process's share, busiest first: shows a worker left idle because the
            # kernel gave the connections to the other (docs/performance.md).
            report[name]["process_cores"] = _process_cores(before, after, name, seconds)
    # Whatever else ran on the machine meanwhile (and kernel work charged to no one of ours).
    report["other_cores"] = round(max(0.0, busy - accounted), 2)
    return report


# -- wrk ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """What bench/wrk/common.lua's done() reported, plus helpers."""

    duration_s: float
    requests: int
    socket_errors: dict[str, int]
    status_errors: int  # wrk's own count of answers >= 400
    latency_us: dict[str, float]
    threads: list[dict[str, Any]]
    cpu: dict[str, Any]  # cores used during the run: machine, wrk, each watched process

    def total(self, counter: str) -> int:
        return sum(int(t[counter]) for t in self.threads)

    def per_s(self, counter: str) -> float:
        return self.total(counter) / self.duration_s

    def latency_ms(self) -> dict[str, float]:
        return {k: round(v / 1000, 3) for k, v in self.latency_us.items() if k != "mean"}


def run_wrk(
    script: str,
    url: str,
    *,
    connections: int,
    duration: int,
    bench_dir: Path,
    env: Mapping[str, str] | None = None,
    watch: Mapping[str, int] | None = None,
) -> WrkResult:
    """One wrk run with -t N -c N (one connection per thread, as the Lua state machines need).

    `watch` names processes (with their descendants) whose CPU use during the run is reported.
    """
    watch = watch or {}
    bench_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    wrk_env = {
        **os.environ,
        "LUA_PATH": f"{WRK_DIR}/?.lua;;",
        "BENCH_DIR": str(bench_dir),
        **(env or {}),
    }
    before = _cpu_snapshot(watch)
    done = subprocess.run(
        argv, env=wrk_env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    cpu = _cpu_report(before, _cpu_snapshot(watch), watch)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    (bench_dir / "wrk.out").write_text(done.stdout)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            errors = dict(raw["errors"])
            status_errors = errors.pop("status")
            return WrkResult(
                duration_s=raw["duration_us"] / 1e6,
                requests=raw["requests"],
                socket_errors=errors,
                status_errors=status_errors,
                latency_us=raw["latency_us"],
                threads=raw["threads"],
                cpu=cpu,
            )
    raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{done.stdout}\n{done.stderr}")


def gather_lines(dirs: Sequence[Path], name: str) -> list[str]:
    """All lines of <dir>/<name>-<k>.txt over the given run directories."""
    items: list[str] = []
    for directory in dirs:
        for path in sorted(directory.glob(f"{name}-*.txt")):
            items.extend(line for line in path.read_text().splitlines() if line)
    return items


def write_slices(items: Sequence[str], parts: int, bench_dir: Path) -> list[list[str]]:
    """Cut `items` into `parts` disjoint slices, slice-<k>.txt for wrk thread k."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    size = len(items) // parts
    slices = [list(items[k * size : (k + 1) * size]) for k in range(parts)]
    for k, part in enumerate(slices):
        (bench_dir / f"slice-{k}.txt").write_text("".join(f"{item}\n" for item in part))
    return slices


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    """The wrk parameters shared by every system and phase of one benchmark run."""

    url: str
    connections: int
    duration: int  # seconds per measured phase
    warmup: int  # seconds of unmeasured creates first (their ids feed the flow phase)
    work: Path  # run directories go here
    env: Mapping[str, str]  # for the Lua scripts (BENCH_BODY, ...)
    watch: Mapping[str, int]  # processes whose CPU use is reported, by name


@dataclasses.dataclass(frozen=True)
class Phases:
    create: WrkResult
    flow: WrkResult
    slices: list[list[str]]  # the ids offered to each flow thread, in order
    flow_dir: Path


def _nothing(phase: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def create_then_flow(
    plan: LoadPlan,
    create_script: str,
    flow_script: str,
    around: Callable[[str], contextlib.AbstractContextManager[None]] = _nothing,
    prepare_flow: Callable[[list[list[str]], Path], None] | None = None,
) -> Phases:
    """Measured creates, then measured read flows on secrets made beforehand.

    Each flow needs a secret of its own, so the ids the create runs wrote are cut into
    disjoint per-thread slices; the flow phase then contains only the read requests. When
    the warm-up and measured creates did not leave enough ids for the flow phase (flows are
    at least as slow as creates: each contains a write as well), an unmeasured create run
    tops them up. `around(phase)` wraps each measured wrk run ("create", "flow").
    `prepare_flow(slices, flow_dir)` runs between the two, unmeasured: what a client computes
    on its own device before it sends (not on the server's cores) goes to files the flow
    script reads.
    """

    def creates(name: str, seconds: int) -> WrkResult:
        return run_wrk(
            create_script,
            plan.url,
            connections=plan.connections,
            duration=seconds,
            bench_dir=plan.work / name,
            env=plan.env,
            watch=plan.watch,
        )

    runs = []
    if plan.warmup:
        log(f"warm-up: {plan.warmup} s of creates")
        creates("warmup", plan.warmup)
        runs.append(plan.work / "warmup")
    log(f"creates: {plan.duration} s, {plan.connections} connections")
    with around("create"):
        created = creates("create", plan.duration)
    runs.append(plan.work / "create")
    ids = gather_lines(runs, "ids")
    rate = max(created.per_s("ok"), 1.0)
    needed = int(rate * plan.duration * 1.25) + 10 * plan.connections
    if len(ids) < needed:
        seconds = math.ceil((needed - len(ids)) / rate * 1.2)
        log(f"top-up: {seconds} s of unmeasured creates ({len(ids)} ids, {needed} wanted)")
        creates("topup", seconds)
        runs.append(plan.work / "topup")
        ids = gather_lines(runs, "ids")
    flow_dir = plan.work / "flow"
    slices = write_slices(ids, plan.connections, flow_dir)
    if prepare_flow is not None:
        prepare_flow(slices, flow_dir)
    log(f"read flows: {plan.duration} s on {len(ids)} secrets made beforehand")
    with around("flow"):
        flow = run_wrk(
            flow_script,
            plan.url,
            connections=plan.connections,
            duration=plan.duration,
            bench_dir=flow_dir,
            env=plan.env,
            watch=plan.watch,
        )
    return Phases(created, flow, slices, flow_dir)


# -- profiling (optional, py-spy) -------------------------------------------------------


def profile_top(collapsed: Path, top: int = 10) -> dict[str, Any]:
    """The hottest lines of a py-spy `--format raw` (collapsed stacks) file.

    For each thread (py-spy `--threads`; else one group, "all"): its sample count and the
    lines most often innermost on its stack, as a share of that thread's samples. With
    `--idle` the shares are of wall time; a line in C code (SQLite, a socket send) stands
    for the time spent below it.
    """
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        group = "all"
        if frames[0].startswith("thread ("):
            group = frames.pop(0).split(": ", 1)[-1]
        if frames:
            groups[group][_short_frame(frames[-1])] += int(count_text)
    report: dict[str, Any] = {}
    for group, counter in groups.items():
        samples = sum(counter.values())
        report[group] = {
            "samples": samples,
            "self": [
                {"line": name, "percent": round(100 * n / samples, 1)}
                for name, n in counter.most_common(top)
            ],
        }
    return report


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short_frame(frame: str) -> str:
    """'f (/x/site-packages/uvicorn/h.py:52)' -> 'f (uvicorn/h.py:52)'."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return (
        f"{match['func']} ({path}:{match['line']})"
        if match["line"]
        else f"{match['func']} ({path})"
    )


# -- the machine -------------------------------------------------------------------------


def fsync_latency_us(directory: Path, rounds: int = 200) -> float:
    """Median time of a 4 KiB write + fsync on the data directory's file system."""
    path = directory / "fsync-probe"
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 4096
        for _ in range(rounds):
            started = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return round(times[len(times) // 2] * 1e6, 1)


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unavailable"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+uncommitted" if changes else "")


def machine_info(data_parent: Path) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "fsync_4k_median_us": fsync_latency_us(data_parent),
        "commit": _commit(),
    }
