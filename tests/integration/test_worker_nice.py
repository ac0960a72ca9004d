"""`atopos serve --workers 2` on SQLite: the workers lower their CPU priority by
ATOPOS_WORKER_NICE (5 by default) below the writer process's, which keeps the node's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atopos.server.config import InvalidSetting, ServerConfig
from tests.servers import ServerProcess, children_of, is_writer_process


def _nice(pid: int) -> int:
    """The nice value of `pid`'s main thread (Linux keeps one per thread)."""
    # Fields after the command's closing parenthesis; nice is field 19 of proc_pid_stat(5).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def _start(tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    return ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_WORKERS": "2", **env},
    ).start()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        server.stop()


def _niceness(server: ServerProcess) -> tuple[int, int, list[int]]:
    """(the supervisor's, the writer process's, the workers') nice values."""
    assert server.process is not None
    children = children_of(server)
    writers = [pid for pid in children if is_writer_process(pid)]
    workers = [pid for pid in children if pid not in writers]
    assert len(writers) == 1, children
    assert len(workers) == 2, children
    return _nice(server.process.pid), _nice(writers[0]), [_nice(pid) for pid in workers]


def test_the_workers_run_five_below_the_writer_process_by_default(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    server = _start(tmp_path, {})
    started.append(server)
    supervisor, writer, workers = _niceness(server)
    assert writer == supervisor
    assert workers == [min(19, supervisor + 5)] * 2


def test_a_nice_increment_of_zero_keeps_them_equal(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    server = _start(tmp_path, {"ATOPOS_WORKER_NICE": "0"})
    started.append(server)
    supervisor, writer, workers = _niceness(server)
    assert writer == supervisor
    assert workers == [supervisor] * 2


@pytest.mark.parametrize("value", ["-1", "20", "five", "2.5"])
def test_a_nice_increment_outside_0_to_19_is_refused_with_a_sentence(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATOPOS_WORKER_NICE", value)
    with pytest.raises(InvalidSetting, match="ATOPOS_WORKER_NICE must be a whole number"):
        ServerConfig.from_env()
