"""The benchmarks' CPU report names each process's share of a multi-process server, busiest
first, so a phase where one worker got every connection (and the other idled) shows."""

from __future__ import annotations

from bench.harness import _TICK, _cpu_report, _CpuSnapshot


def _snapshot(at: float, machine_busy: int, ticks: dict[int, int]) -> _CpuSnapshot:
    return _CpuSnapshot(
        at=at,
        machine=(machine_busy, 0),
        children=0.0,
        watched={"server": {pid: {pid: t} for pid, t in ticks.items()}},
        names={10: "atopos", 11: "atopos-writer", 12: "atopos", 13: "atopos"},
    )


def test_each_process_of_the_server_has_its_cores_busiest_first() -> None:
    tick = int(_TICK)
    before = _snapshot(0.0, 0, {10: 0, 11: 0, 12: 0, 13: 0})
    # Over 2 s: one worker busy all the time, the writer half, the other worker idle.
    after = _snapshot(2.0, 2 * 2 * tick, {10: 0, 11: 1 * tick, 12: 2 * tick, 13: 0})
    report = _cpu_report(before, after, {"server": 10})
    assert report["server"]["processes"] == 4
    assert report["server"]["cores"] == 1.5
    assert report["server"]["process_cores"] == [
        ("atopos", 1.0),
        ("atopos-writer", 0.5),
        ("atopos", 0.0),
        ("atopos", 0.0),
    ]
