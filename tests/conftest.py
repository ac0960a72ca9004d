from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atopos.server.config import ServerConfig, rate_limits
from tests.servers import ManualClock, ServerProcess, in_process_server


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
