"""Writers' lock benchmark: what the bounded wait (storage/writers_lock.py) costs against a
plain blocking flock, with two processes taking turns that each hold the lock a while (a
stand-in for a batch's commit), in the same run, alternating.

    .venv/bin/python bench/writers_lock.py [--turns 3000] [--hold-us 100] [--rounds 2]

Prints ONE JSON line on stdout: per variant and round, the wall time of the two processes'
turns and the CPU per turn. See docs/performance.md, "Issue 20".
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "src"))

import argparse
import fcntl
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue

from atopos.storage.writers_lock import WritersLock

Turns = Callable[[Path, int, float, "Queue[tuple[float, float]]"], None]


def _hold(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def blocking_flock(path: Path, turns: int, hold: float, out: Queue[tuple[float, float]]) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(turns):
        fcntl.flock(fd, fcntl.LOCK_EX)
        _hold(hold)
        fcntl.flock(fd, fcntl.LOCK_UN)
    out.put((time.perf_counter() - wall, time.process_time() - cpu))
    os.close(fd)


def bounded_lock(path: Path, turns: int, hold: float, out: Queue[tuple[float, float]]) -> None:
    lock = WritersLock(path, wait_seconds=5)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(turns):
        if not lock.acquire():
            raise RuntimeError("the lock was not free within 5 s")
        _hold(hold)
        lock.release()
    out.put((time.perf_counter() - wall, time.process_time() - cpu))
    lock.close()


def run(variant: Turns, turns: int, hold: float) -> dict[str, float]:
    out: Queue[tuple[float, float]] = multiprocessing.Queue()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "atopos.db-writers.lock"
        processes = [
            multiprocessing.Process(target=variant, args=(path, turns, hold, out)) for _ in range(2)
        ]
        for process in processes:
            process.start()
        results = [out.get() for _ in processes]
        for process in processes:
            process.join()
    return {
        "wall_s": round(max(wall for wall, _ in results), 3),
        "cpu_us_per_turn": round(sum(cpu for _, cpu in results) / (2 * turns) * 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--hold-us", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    variants: dict[str, Turns] = {"blocking_flock": blocking_flock, "bounded": bounded_lock}
    rounds: list[dict[str, dict[str, float]]] = []
    for _ in range(args.rounds):
        rounds.append(
            {
                name: run(variant, args.turns, args.hold_us / 1e6)
                for name, variant in variants.items()
            }
        )
    print(json.dumps({"turns": args.turns, "hold_us": args.hold_us, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
