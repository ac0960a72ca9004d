"""The group-commit writer's batches on a real SQLite file: a batch runs without savepoints,
and an operation that raises inside a batch undoes only its own writes (the batch runs again,
each operation in its own savepoint)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from atopos.errors import Unavailable
from atopos.storage.sqlite_writer import GroupCommitWriter


class _Traced:
    """A writer on `path` whose connection records every statement it runs."""

    def __init__(self, path: Path) -> None:
        self.statements: list[str] = []
        self._path = path

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY NOT NULL)")
        conn.set_trace_callback(self.statements.append)
        return conn

    def rows(self) -> set[str]:
        conn = sqlite3.connect(self._path)
        try:
            return {k for (k,) in conn.execute("SELECT k FROM t")}
        finally:
            conn.close()


def _insert(key: str) -> Callable[[sqlite3.Connection], str]:
    def insert(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (?)", (key,))
        return key

    return insert


def _insert_then_fail(conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO t (k) VALUES ('half')")
    raise ValueError("refused after a write")


async def _one_batch(
    writer: GroupCommitWriter, operations: list[Callable[[sqlite3.Connection], str]]
) -> list[object]:
    """Run `operations` as one batch: they queue up while the writer is held in the previous one."""
    entered, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> str:
        entered.set()
        gate.wait(10)
        return "held"

    held = writer.submit(hold)
    assert await asyncio.to_thread(entered.wait, 10)
    futures = [writer.submit(operation) for operation in operations]
    gate.set()
    assert await held == "held"
    return list(await asyncio.gather(*futures, return_exceptions=True))


@pytest.fixture
def traced(tmp_path: Path) -> _Traced:
    return _Traced(tmp_path / "writer.db")


def _run_batch(
    traced: _Traced, operations: list[Callable[[sqlite3.Connection], str]]
) -> list[object]:
    writer = GroupCommitWriter(traced.connect)
    writer.start()
    try:
        return asyncio.run(_one_batch(writer, operations))
    finally:
        writer.stop()


def test_a_batch_commits_in_one_transaction_without_savepoints(traced: _Traced) -> None:
    results = _run_batch(traced, [_insert("a"), _insert("b"), _insert("c")])
    assert results == ["a", "b", "c"]
    assert traced.rows() == {"a", "b", "c"}
    batch = [s for s in traced.statements if not s.startswith(("PRAGMA", "CREATE"))]
    # The held operation's transaction, then the three in one: two BEGINs, two COMMITs.
    assert [s for s in batch if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert not [s for s in batch if "SAVEPOINT" in s or s.startswith("RELEASE")]


def test_a_failing_operation_undoes_only_its_own_writes(traced: _Traced) -> None:
    results = _run_batch(
        traced, [_insert("a"), _insert_then_fail, _insert("b"), _insert("a"), _insert("c")]
    )
    assert results[0] == "a"
    assert isinstance(results[1], ValueError)
    assert results[2] == "b"
    # A duplicate key is an SQLite error: the API's 503, and nothing of it written.
    assert isinstance(results[3], Unavailable)
    assert results[4] == "c"
    assert traced.rows() == {"a", "b", "c"}
    # The retry ran each operation in its own savepoint.
    assert sum(s == "SAVEPOINT op" for s in traced.statements) == 5
