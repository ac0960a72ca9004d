"""Rate-limit store micro-benchmark: the CPU one `RateLimits.hit` costs on `limits`' in-process
memory storage and on the workers' shared counter table (server/shared_counters.py), alone
and with a second process hitting the same table at the same time (lock contention), in
alternating slices of one run.

    .venv/bin/python bench/ratelimit_store.py [--seconds 0.5] [--rounds 3]

Prints ONE JSON line on stdout: per store, the median over rounds of microseconds of CPU
(process time) per hit, for an IPv4 client (one counter) and an IPv6 one (three counters:
its /64, /56 and /48). See docs/performance.md, "Rate-limit counters".
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable

from limits.aio.storage import MemoryStorage, Storage

from atopos.clock import SystemClock
from atopos.randomness import system_random_bytes
from atopos.server.identity import ClientId
from atopos.server.ratelimit import RateLimits
from atopos.server.shared_counter_storage import SharedCounterStorage
from atopos.server.shared_counters import SharedCounterTable

_CLIENTS = {
    "ipv4": ClientId("client-v4"),
    "ipv6": ClientId("client-v6", ("client-v6/56", "client-v6/48")),
}
_FORK = multiprocessing.get_context("fork")


def _cpu_per_hit(storage: Storage, client: ClientId, seconds: float) -> float:
    """Microseconds of this process's CPU per hit, hitting for about `seconds`."""
    limits = RateLimits({"create": 10**9}, storage)

    async def hits() -> tuple[int, float]:
        count, started_cpu = 0, time.process_time()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(200):
                await limits.hit("create", client)
            count += 200
        return count, time.process_time() - started_cpu

    count, cpu = asyncio.run(hits())
    return cpu / count * 1e6


def _hammer(table: SharedCounterTable, seconds: float) -> None:
    _cpu_per_hit(SharedCounterStorage(table), _CLIENTS["ipv4"], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table = SharedCounterTable(SystemClock(), system_random_bytes)
    cases: dict[str, Callable[[ClientId], float]] = {
        "memory": lambda client: _cpu_per_hit(MemoryStorage(), client, args.seconds),
        "shared": lambda client: _cpu_per_hit(SharedCounterStorage(table), client, args.seconds),
    }

    def contended(client: ClientId) -> float:
        other = _FORK.Process(target=_hammer, args=(table, args.seconds + 0.2))
        other.start()
        try:
            return _cpu_per_hit(SharedCounterStorage(table), client, args.seconds)
        finally:
            other.join()

    cases["shared_contended"] = contended
    results: dict[str, dict[str, list[float]]] = {
        name: {kind: [] for kind in _CLIENTS} for name in cases
    }
    for round_number in range(args.rounds):
        for name, case in cases.items():
            for kind, client in _CLIENTS.items():
                results[name][kind].append(case(client))
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    medians = {
        name: {kind: round(statistics.median(values), 2) for kind, values in kinds.items()}
        for name, kinds in results.items()
    }
    print(json.dumps({"us_cpu_per_hit": medians, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
