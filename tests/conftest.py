from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atopos.server.config import ServerConfig, rate_limits
from tests.fuzzing import FUZZ_SECONDS, IS_FUZZING, PROFILE
from tests.servers import ManualClock, ServerProcess, in_process_server

_FUZZ_BUDGET = pytest.StashKey[float]()
_FUZZ_ROUNDS = pytest.StashKey[list[tuple[str, int, float]]]()
_REPORT_LINE = "atopos-report-line"
_report_lines: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: a property or stateful test that `make fuzz` runs for a time budget"
    )
    config.stash[_FUZZ_ROUNDS] = []


@pytest.hookimpl(trylast=True)  # after -m/-k deselected: the budget is for what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The browser suite's session-wide Playwright (sync API) keeps an event loop running
    # in the main thread until the session ends; every later asyncio.run() would fail.
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)
    _group_shared_networks(items)
    fuzzed = sum(1 for item in items if item.get_closest_marker("fuzz") is not None)
    config.stash[_FUZZ_BUDGET] = FUZZ_SECONDS / fuzzed if fuzzed else 0.0


# Tests on one of these fixtures run in one pytest-xdist worker (`make test` runs two), so
# the session starts one private Tor network and one test mixnet, not one per worker. The
# browser's Tor test stays out of the group: a worker that has run Playwright cannot run
# asyncio.run() any more, so its browser tests must stay last (the sort above), and a group
# runs where its first test falls in that order.
_SHARED_NETWORKS = {"tor_network": "tor", "mixnet_lab": "mixnet"}


def _group_shared_networks(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in item.nodeid:
            continue
        for fixture, group in _SHARED_NETWORKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
                break


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Under the fuzz profile, run each fuzz test in rounds until its budget is spent.

    Each round is one complete Hypothesis run with a fresh seed (failures found earlier
    are replayed first from the example database); no round starts that would likely end
    after the budget, so `make fuzz` stops by itself.
    """
    if not IS_FUZZING or pyfuncitem.get_closest_marker("fuzz") is None:
        return None
    budget = pyfuncitem.config.stash[_FUZZ_BUDGET]
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    started = time.monotonic()
    rounds, longest = 0, 0.0
    while True:
        round_started = time.monotonic()
        pyfuncitem.obj(**arguments)
        rounds += 1
        longest = max(longest, time.monotonic() - round_started)
        if time.monotonic() - started + longest > budget:
            break
    pyfuncitem.config.stash[_FUZZ_ROUNDS].append(
        (pyfuncitem.nodeid, rounds, time.monotonic() - started)
    )
    return True


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect `report_line`'s lines; they travel in the report, so a test run by an xdist
    worker still prints them in the controller's summary."""
    if report.when != "call":
        return
    for name, line in report.user_properties:
        if name == _REPORT_LINE:
            _report_lines.append(f"{report.nodeid}: {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    if _report_lines:
        terminalreporter.section("what the verification tests checked")
        for line in _report_lines:
            terminalreporter.write_line(line)
    if not IS_FUZZING:
        return
    terminalreporter.section(f"fuzz rounds (profile {PROFILE}, FUZZ_SECONDS={FUZZ_SECONDS:g})")
    for nodeid, rounds, seconds in config.stash[_FUZZ_ROUNDS]:
        terminalreporter.write_line(f"{rounds:6d} rounds {seconds:8.1f} s  {nodeid}")


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a line (the counts a test checked) in the run's summary, even when passing."""

    def report(line: str) -> None:
        request.node.user_properties.append((_REPORT_LINE, line))

    return report


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000)


@pytest.fixture
def api(tmp_path: Path, clock: ManualClock) -> Iterator[str]:
    """An in-process server on a loopback port with a hand-moved clock, PoW off."""
    config = ServerConfig(data_dir=tmp_path / "data", pow_bits=0, **rate_limits(0))
    with in_process_server(config, clock) as url:
        yield url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """`atopos serve` in a child process on a loopback port, PoW off, rate limits off."""
    process = ServerProcess(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
