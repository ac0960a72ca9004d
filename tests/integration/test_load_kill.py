"""A mixed load near the server's capacity for a minute, with `kill -9` and a restart in the
middle: no acknowledged secret is lost, none is revealed twice, and nothing but connection
failures and 503s happens, and those only while the server restarts.

The load, the bookkeeping and the final read-back are bench/load_kill.py (also a benchmark
printing one JSON line); see its docstring for exactly what is counted.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.load_kill import LoadKillConfig, run_load_kill

SECONDS = 60.0


@pytest.mark.slow
def test_load_with_kill_9_loses_nothing_and_reveals_nothing_twice(
    tmp_path: Path, report_line: Callable[[str], None]
) -> None:
    config = LoadKillConfig(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        seconds=SECONDS,
        concurrency=48,
    )
    # On a thread of its own: the load runs its own event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        report = pool.submit(run_load_kill, config).result(timeout=SECONDS + 300)
    report_line(
        f"{report.seconds:.0f} s at {report.requests_per_second:.0f} req/s "
        f"(server {report.server_cpu_cores} cores, restart {report.restart_seconds} s): "
        f"created={report.created} revealed={report.revealed} "
        f"double-reveals={report.double_reveals} lost={report.lost} "
        f"checked={report.checked} uncertain={report.uncertain_reveals} "
        f"replays-refused={report.replays_refused} "
        f"errors-in-restart-window={report.errors_in_restart_window} "
        f"errors-outside={report.errors_outside_restart_window}"
    )
    assert report.problems == []
    assert report.double_reveals == 0
    assert report.lost == 0
    assert report.errors_outside_restart_window == 0
    # Every acknowledged secret was read back after the restart.
    assert report.checked == report.created
    assert report.reveals_after_restart_checked > 0
    # The run did what it claims: load on both sides of the kill, replays tried.
    assert report.seconds >= SECONDS
    assert report.created >= 500
    assert report.created_after_restart > 0
    assert report.revealed >= 200
    assert report.replays_refused > 0
    assert report.errors_in_restart_window > 0  # the kill did interrupt the load
    output = config.log_path.read_text(errors="replace")
    assert "Traceback" not in output
