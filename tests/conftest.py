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
    # in the main thread until the session ends; every later asyncio.run() would fail. So
    # the browser tests come last, the Tor tests just before the other browser tests (the
    # browser's own Tor test last of them).
    items.sort(key=_run_order)
    _group_for_workers(items)
    fuzzed = sum(1 for item in items if item.get_closest_marker("fuzz") is not None)
    config.stash[_FUZZ_BUDGET] = FUZZ_SECONDS / fuzzed if fuzzed else 0.0


def _is_browser(item: pytest.Item) -> bool:
    return "tests/browser/" in item.nodeid


def _uses(item: pytest.Item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())


def _run_order(item: pytest.Item) -> tuple[bool, bool, bool]:
    is_tor = _uses(item, "tor_network")
    return (_is_browser(item) or is_tor, not is_tor, _is_browser(item))


# `make test` runs two pytest-xdist workers (--dist loadgroup), each taking whole groups in
# the order above: a test module by default, so its module-scoped fixtures (a built image, a
# deployment, a loaded page) are made once; every Tor test, so the run starts one private
# Tor network (the group falls just before the browser tests, so the worker that takes it
# runs its browser test last); and every test on the test mixnet.
_SHARED_NETWORKS = {"tor_network": "tor", "mixnet_lab": "mixnet"}


def _group_for_workers(items: list[pytest.Item]) -> None:
    for item in items:
        group = item.nodeid.split("::", 1)[0]
        group = next((g for f, g in _SHARED_NETWORKS.items() if _uses(item, f)), group)
        item.add_marker(pytest.mark.xdist_group(group))


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
