"""Atopos secrets benchmark: creates/s and reveal flows/s under wrk, server memory, exactly-once
checks, and micro-benchmarks of proof-of-work and ticket verification.

    .venv/bin/python bench/secrets.py [--duration 10] [--connections 4] [--json-out PATH]
                                      [--profile DIR]   # py-spy the server (figures then skewed)

Starts a fresh server (temporary data directory, PoW off, rate limits off) on a free loopback
port, drives it with wrk (bench/wrk/*.lua), prints ONE JSON line on stdout (progress on
stderr) and exits 1 when a correctness check failed. See docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file, bench/ would be first on sys.path, where this file stands in for the
    # standard library's `secrets`; the repository root goes there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any

from bench.harness import (
    AtoposServer,
    LoadPlan,
    Phases,
    Processes,
    atopos_envelope,
    create_then_flow,
    gather_lines,
    interrupt_on_signals,
    log,
    machine_info,
    process_memory_kib,
    profile_top,
    start_atopos,
)

__all__ = ["TARGETS", "atopos_phases", "main", "micro_benchmarks", "reveal_flow"]

TARGETS = {
    "creates_per_s": 1000,
    "reveal_flows_per_s": 500,
    "pow_verify_us": 2.0,
    "ticket_verify_us": 5.0,
}


def reveal_flow() -> tuple[int, str]:
    """The reveal flow bench/wrk/flow.lua runs, as its environment picks it: the requests
    per flow, and what they are (also for peers.py)."""
    if os.environ.get("BENCH_THREE_STEP") == "1":
        return 3, (
            "POST /api/v1/secrets/{id}/challenge + POST .../ticket (nonce 0, PoW off) "
            "+ POST .../reveal (envelope bytes)"
        )
    if os.environ.get("BENCH_FLOW") == "challenge":
        return 2, (
            "POST /api/v1/secrets/{id}/challenge + POST .../ticket with reveal: true "
            "(nonce 0, PoW off; envelope bytes)"
        )
    return 1, (
        "POST /api/v1/secrets/{id}/ticket with a stamp and reveal: true "
        "(nonce 0, PoW off; envelope bytes)"
    )


# A stamp, ticket with "reveal": true (BENCH_FLOW=challenge: challenge, ticket with reveal;
# BENCH_THREE_STEP=1: challenge, ticket, reveal)
REQUESTS_PER_FLOW, FLOW = reveal_flow()
# The stamp flow's bodies are made before its phase (prepare_stamped_requests); with
# BENCH_STAMPS=live flow.lua signs each as it goes, on wrk's share of the cores.
STAMPS_MADE_BEFORE = REQUESTS_PER_FLOW == 1 and os.environ.get("BENCH_STAMPS") != "live"
BURNED_SAMPLE = 200
UNREVEALED_SAMPLE = 50


# -- load ----------------------------------------------------------------------------------


def atopos_phases(
    server: AtoposServer,
    work: Path,
    *,
    connections: int,
    duration: int,
    warmup: int,
    around: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
    watch: dict[str, int] | None = None,
    env: dict[str, str] | None = None,
) -> Phases:
    """Creates, then reveal flows, on a running Atopos server (used by peers.py too).
    `env` goes to the wrk scripts (BENCH_ADDRS spreads the load over several nodes)."""
    envelope = atopos_envelope()
    body_path = work / "envelope.bin"
    body_path.write_bytes(envelope)
    plan = LoadPlan(
        url=server.url,
        connections=connections,
        duration=duration,
        warmup=warmup,
        work=work,
        env={
            "BENCH_BODY": str(body_path),
            "BENCH_BODY_BYTES": str(len(envelope)),
            **(env or {}),
        },
        watch={"server": server.proc.pid, **(watch or {})},
    )
    prepare = prepare_stamped_requests if STAMPS_MADE_BEFORE else None
    if around is None:
        return create_then_flow(plan, "create.lua", "flow.lua", prepare_flow=prepare)
    return create_then_flow(plan, "create.lua", "flow.lua", around, prepare)


def prepare_stamped_requests(slices: list[list[str]], flow_dir: Path) -> None:
    """Each flow's one request body (a fresh stamp, its access proof, `"reveal": true`) as
    stamped-<k>.txt, line for line with slice-<k>.txt, for flow.lua. A reader signs on its
    own device; signed in wrk, each flow also cost the two cores the server runs on about
    0.1 ms (0.43 cores at 16 connections). The stamps carry this minute, so they stay inside
    the server's window (access.md: now - `challenge_ttl`, 120 s by default) for a phase of
    up to a minute."""
    from atopos.crypto.access_proof import AccessSigner
    from atopos.crypto.base64url import b64url_decode, b64url_encode
    from atopos.crypto.sizes import STAMP_SALT_BYTES
    from atopos.crypto.stamps import make_stamp

    signer = AccessSigner(bytes(32))  # create.lua's access key: the all-zero link key's
    minute = int(time.time()) // 60 * 60
    for k, part in enumerate(slices):
        lines = []
        for text in part:
            secret_id = b64url_decode(text)
            stamp = make_stamp(secret_id, minute, os.urandom(STAMP_SALT_BYTES))
            proof = b64url_encode(signer.sign_stamp_proof(secret_id, stamp))
            body = {"stamp": stamp, "nonce": 0, "access_proof": proof, "reveal": True}
            lines.append(json.dumps(body, separators=(",", ":")) + "\n")
        (flow_dir / f"stamped-{k}.txt").write_text("".join(lines))


def load_figures(phases: Phases) -> dict[str, Any]:
    create, flow = phases.create, phases.flow
    return {
        "create": {
            "per_s": round(create.per_s("ok"), 1),
            "created": create.total("ok"),
            "duration_s": round(create.duration_s, 2),
            "latency_ms": create.latency_ms(),
            "non_2xx": create.total("bad"),
            "socket_errors": sum(create.socket_errors.values()),
            "cpu_cores": create.cpu,
        },
        "reveal_flow": {
            "per_s": round(flow.per_s("flows"), 1),
            "flows": flow.total("flows"),
            "requests_per_s": round(flow.requests / flow.duration_s, 1),
            "requests_per_flow": REQUESTS_PER_FLOW,
            "flow": FLOW,
            "duration_s": round(flow.duration_s, 2),
            "latency_ms_per_request": flow.latency_ms(),
            "non_2xx": flow.total("bad"),
            "socket_errors": sum(flow.socket_errors.values()),
            "ran_out_of_secrets": flow.total("exhausted") > 0,
            "cpu_cores": flow.cpu,
        },
    }


# -- correctness ---------------------------------------------------------------------------


class Api:
    """A plain keep-alive HTTP/1.1 client for the checks (not for load)."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def challenge_status(self, secret_id: str) -> int:
        self._conn.request("POST", f"/api/v1/secrets/{secret_id}/challenge", body=b"")
        response = self._conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self._conn.close()


def settled_counts(server: AtoposServer, timeout: float = 5.0) -> dict[str, int]:
    """Store row counts once they stop moving: wrk abandons its last requests at the end of
    a run, and the server may still be committing them."""
    deadline = time.monotonic() + timeout
    last = server.db_counts()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = server.db_counts()
        if now == last:
            return now
        last = now
    return last


def check_exactly_once(
    server: AtoposServer, phases: Phases, before: dict[str, int], after: dict[str, int]
) -> dict[str, Any]:
    flow = phases.flow
    flows = flow.total("flows")
    revealed = gather_lines([phases.flow_dir], "revealed")
    inflight = [t["inflight"] for t in flow.threads if t["inflight"]]
    # Ids past the one each thread was working on were never touched: they must be intact.
    untouched = [
        secret_id
        for part, thread in zip(phases.slices, flow.threads, strict=True)
        for secret_id in part[int(thread["pos"]) :]
    ]
    rng = random.Random(0)
    api = Api(server.port)
    try:
        # A reveal sent but unanswered when wrk stopped may still have consumed its secret.
        inflight_consumed = sum(api.challenge_status(i) == 404 for i in inflight)
        burned = rng.sample(revealed, min(BURNED_SAMPLE, len(revealed)))
        burned_404 = sum(api.challenge_status(i) == 404 for i in burned)
        intact = rng.sample(untouched, min(UNREVEALED_SAMPLE, len(untouched)))
        intact_200 = sum(api.challenge_status(i) == 200 for i in intact)
    finally:
        api.close()
    consumed = before["secrets"] - after["secrets"]
    tickets = after["used_tickets"] - before["used_tickets"]
    checks = {
        "reveals_200": flows,
        "revealed_ids_recorded": len(revealed),
        "revealed_ids_distinct": len(set(revealed)),
        "secrets_consumed": consumed,
        "used_tickets_added": tickets,
        "reveals_unanswered_at_stop": len(inflight),
        "of_which_consumed": inflight_consumed,
        "revealed_bodies_wrong_size": flow.total("bad_body"),
        "burned_sample": {"checked": len(burned), "challenge_404": burned_404},
        "unrevealed_sample": {"checked": len(intact), "challenge_200": intact_200},
    }
    # Every flow's secret has one view, and a burn records no ticket id
    # (docs/protocol/access.md, "Exactly once").
    checks["exactly_once"] = (
        consumed == flows + inflight_consumed
        and tickets == 0
        and len(revealed) == len(set(revealed)) == flows
    )
    checks["ok"] = bool(
        checks["exactly_once"]
        and burned_404 == len(burned) > 0
        and intact_200 == len(intact)
        and flow.total("bad_body") == 0
    )
    return checks


# -- profiling -----------------------------------------------------------------------------


def py_spy() -> str | None:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    return found


PROFILE_RATE = 100  # samples per second
PROFILE_VIEWS = {
    # Wall time of every thread, idle included: where each thread's time goes.
    "threads": ("--threads", "--idle"),
    # Only samples holding the GIL: the Python work that the one event loop serializes.
    "gil": ("--gil",),
}


@contextlib.contextmanager
def profiled(
    procs: Processes, pid: int, out_dir: Path, phase: str, duration: int
) -> Iterator[None]:
    """py-spy the server while the phase's wrk runs (both views at once, without pausing
    the server); py-spy stops itself after `duration`."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    spies = [
        procs.start(
            f"py-spy-{phase}-{view}",
            [
                *(tool, "record", "--pid", str(pid), "--duration", str(duration)),
                *("--rate", str(PROFILE_RATE), "--nonblocking", "--format", "raw"),
                *("--output", str(out_dir / f"{phase}-{view}.collapsed.txt"), *flags),
            ],
        )
        for view, flags in PROFILE_VIEWS.items()
    ]
    try:
        yield
    finally:
        for spy in spies:
            try:
                spy.wait(timeout=duration + 30)
            finally:
                procs.stop(spy)


# -- micro-benchmarks ----------------------------------------------------------------------


def _best_us(stmt: str, env: dict[str, Any], rounds: int) -> float:
    timer = timeit.Timer(stmt, globals=env)
    number, _ = timer.autorange()
    return round(min(timer.repeat(rounds, number)) / number * 1e6, 3)


def micro_benchmarks(rounds: int = 7) -> dict[str, Any]:
    """Microseconds per call of our verification code, best of `rounds` timeit rounds."""
    from atopos.crypto import pow as proof_of_work
    from atopos.crypto.stamps import make_stamp, parse_stamp
    from atopos.crypto.tokens import TokenKeys, ticket_id_for

    keys = TokenKeys(os.urandom(32))
    secret_id = os.urandom(16)
    now = int(time.time())
    challenge = keys.issue_challenge(secret_id, now + 120, 16, os.urandom(8))
    data = challenge.encode("ascii")
    nonce = proof_of_work.solve(data, 16)
    ticket = keys.issue_ticket(secret_id, ticket_id_for(challenge), now + 60, now + 180)
    if not proof_of_work.verify(data, nonce, 16):
        raise AssertionError("the solved nonce does not verify")
    keys.open_ticket(ticket, secret_id, now)  # raises if it does not verify
    env = {
        "verify": proof_of_work.verify,
        "open_ticket": keys.open_ticket,
        "open_challenge": keys.open_challenge,
        "data": data,
        "nonce": nonce,
        "ticket": ticket,
        "challenge": challenge,
        "secret_id": secret_id,
        "now": now,
        "parse_stamp": parse_stamp,
        "stamp": make_stamp(secret_id, now, os.urandom(16)),
    }
    return {
        "pow_verify_us": _best_us("verify(data, nonce, 16)", env, rounds),
        "ticket_verify_us": _best_us("open_ticket(ticket, secret_id, now)", env, rounds),
        "challenge_verify_us": _best_us("open_challenge(challenge, secret_id, now)", env, rounds),
        "stamp_parse_us": _best_us("parse_stamp(stamp)", env, rounds),
        "challenge_chars": len(challenge),
        "ticket_chars": len(ticket),
        "rounds": rounds,
    }


# -- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="atopos-bench-") as tmp,
        Processes(Path(tmp)) as procs,
    ):
        work = Path(tmp)
        machine = machine_info(work)
        log("starting the server")
        server = start_atopos(procs, work / "data")
        idle = process_memory_kib(server.proc.pid)
        counts: dict[str, dict[str, int]] = {}

        @contextlib.contextmanager
        def around(phase: str) -> Iterator[None]:
            profiler: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if args.profile:
                profiler = profiled(procs, server.proc.pid, args.profile, phase, args.duration)
            if phase == "flow":
                counts["before"] = settled_counts(server)
            with profiler:
                yield
            if phase == "flow":
                counts["after"] = settled_counts(server)

        phases = atopos_phases(
            server,
            work,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            around=around,
        )
        log("checking exactly-once")
        checks = check_exactly_once(server, phases, counts["before"], counts["after"])
        memory = {"idle": idle, "end": process_memory_kib(server.proc.pid)}
        procs.stop(server.proc)
    log("micro-benchmarks")
    micro = micro_benchmarks()
    figures = load_figures(phases)
    non_2xx = figures["create"]["non_2xx"] + figures["reveal_flow"]["non_2xx"]
    socket_errors = figures["create"]["socket_errors"] + figures["reveal_flow"]["socket_errors"]
    checks["non_2xx"] = non_2xx
    checks["socket_errors"] = socket_errors
    checks["ok"] = bool(
        checks["ok"]
        and non_2xx == 0
        and socket_errors == 0
        and not figures["reveal_flow"]["ran_out_of_secrets"]
    )
    result: dict[str, Any] = {
        "benchmark": "atopos-secrets",
        "params": {
            "duration_s": args.duration,
            "connections": args.connections,
            "wrk_threads": args.connections,
            "warmup_s": args.warmup,
            "envelope_bytes": len(atopos_envelope()),
            "storage": "sqlite",
            "pow_bits": 0,
            "rate_limits": "off",
        },
        **figures,
        "server_memory_kib": memory,
        "micro": micro,
        "targets": TARGETS,
        "met": {
            "creates_per_s": figures["create"]["per_s"] >= TARGETS["creates_per_s"],
            "reveal_flows_per_s": figures["reveal_flow"]["per_s"] >= TARGETS["reveal_flows_per_s"],
            "pow_verify_us": micro["pow_verify_us"] <= TARGETS["pow_verify_us"],
            "ticket_verify_us": micro["ticket_verify_us"] <= TARGETS["ticket_verify_us"],
        },
        "correctness": checks,
        "machine": machine,
    }
    if args.profile:
        result["profile"] = {
            "sampling": {"rate_hz": PROFILE_RATE, "seconds_per_phase": args.duration},
            **{
                phase: {
                    view: profile_top(args.profile / f"{phase}-{view}.collapsed.txt")
                    for view in PROFILE_VIEWS
                }
                for phase in ("create", "flow")
            },
        }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured phase")
    parser.add_argument("--connections", type=int, default=4, help="wrk threads = connections")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured creates")
    parser.add_argument("--json-out", type=Path, help="also write the JSON line to this file")
    parser.add_argument(
        "--profile", type=Path, help="record py-spy profiles of the server into this directory"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.connections <= 256 or args.warmup < 0:
        parser.error("--duration 1..120, --connections 1..256, --warmup >= 0")
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    try:
        result = run(args)
    except KeyboardInterrupt:
        log("interrupted; every process we started is stopped")
        return 130
    line = json.dumps(result, separators=(",", ":"))
    print(line, flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    if not result["correctness"]["ok"]:
        log("a correctness check failed: see correctness in the JSON line")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
