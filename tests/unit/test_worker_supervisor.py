"""The worker supervisor (server/workers.py) on its own, each run in a child Python so its
forks and signals stay out of pytest: a crash-looping worker is given up on after a few
quick forks, and a SIGTERM that arrives between a fork and the new worker's registration
still stops that worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_PRELUDE = """
import os, signal, sys, time
from atopos.clock import SystemClock
from atopos.server.workers import WorkerSupervisor
forks_seen = []
"""


def _run(script: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_worker_that_keeps_dying_at_start_stops_the_node_after_five_forks() -> None:
    result = _run(
        """
        read_end, write_end = os.pipe()

        def work(index):
            os.write(write_end, b"x")
            raise RuntimeError("broken at start")

        started = time.monotonic()
        status = WorkerSupervisor(2, work, SystemClock()).run()
        os.close(write_end)
        forks = len(os.read(read_end, 1000))
        print(status, forks, round(time.monotonic() - started, 1))
        """
    )
    status, forks, seconds = result.stdout.split()
    assert status == "1", result.stderr
    # The fifth quick death gives up: 2 at start and 3 restarts, plus at most the restart of
    # the other worker that was already running when the fifth death came.
    assert 5 <= int(forks) <= 6, result.stderr
    assert float(seconds) < 10


def test_sigterm_between_a_fork_and_the_registration_still_stops_that_worker() -> None:
    # The supervisor signals itself right after fork() returns in the parent, before the
    # child's pid is on its list: the child must still get SIGTERM and the supervisor end.
    result = _run(
        """
        real_fork = os.fork

        def fork_then_sigterm():
            pid = real_fork()
            if pid:
                forks_seen.append(pid)
                os.kill(os.getpid(), signal.SIGTERM)
            return pid

        os.fork = fork_then_sigterm

        def work(index):
            time.sleep(60)

        status = WorkerSupervisor(1, work, SystemClock()).run()
        for pid in forks_seen:
            try:
                os.kill(pid, 0)
                print("alive")
            except ProcessLookupError:
                print("gone")
        print("status", status)
        """,
        timeout=20,
    )
    assert result.stdout.split() == ["gone", "status", "0"], result.stderr
