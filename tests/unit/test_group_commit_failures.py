"""The group-commit writer (storage/sqlite_writer.py) never leaves a caller waiting: a failure
outside a transaction's own failure path (here a connection that breaks mid-batch, so that
even its ROLLBACK fails) answers the batch Unavailable and the writer carries on with a fresh
connection; after the writer has stopped, a write is refused at once instead of queueing for
a thread that is gone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from atopos.errors import Unavailable
from atopos.storage.sqlite_writer import GroupCommitWriter

_ANSWER_WITHIN = 5.0


def _writer(database: Path) -> GroupCommitWriter:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS written (value INTEGER)")
        return conn

    return GroupCommitWriter(connect)


def _insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def operation(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO written (value) VALUES (?)", (value,))
        return value

    return operation


def _written(database: Path) -> list[int]:
    with sqlite3.connect(database) as conn:
        return [value for (value,) in conn.execute("SELECT value FROM written ORDER BY value")]


def test_a_connection_broken_mid_batch_answers_unavailable_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    database = tmp_path / "atopos.db"
    writer = _writer(database)
    writer.start()

    async def scenario() -> int:
        before = await asyncio.wait_for(writer.submit(_insert(1)), _ANSWER_WITHIN)
        assert before == 1
        broken = writer.submit(lambda conn: conn.close())
        with pytest.raises(Unavailable):
            await asyncio.wait_for(broken, _ANSWER_WITHIN)
        return await asyncio.wait_for(writer.submit(_insert(2)), _ANSWER_WITHIN)

    try:
        assert asyncio.run(scenario()) == 2
    finally:
        writer.stop()
    assert _written(database) == [1, 2]


def test_the_callers_of_a_broken_batch_are_answered_before_the_writer_reconnects(
    tmp_path: Path,
) -> None:
    """A reconnect may wait (the fresh connection migrates, and its busy handler waits for
    other writers of the file): the broken batch's callers hear their 503 first."""
    database = tmp_path / "atopos.db"
    connects = 0
    reconnect_may_finish = threading.Event()

    def connect() -> sqlite3.Connection:
        nonlocal connects
        connects += 1
        if connects > 1:
            reconnect_may_finish.wait(_ANSWER_WITHIN * 2)
        conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS written (value INTEGER)")
        return conn

    writer = GroupCommitWriter(connect)
    writer.start()

    async def scenario() -> None:
        broken = writer.submit(lambda conn: conn.close())
        try:
            with pytest.raises(Unavailable):
                await asyncio.wait_for(broken, _ANSWER_WITHIN / 5)
        finally:
            reconnect_may_finish.set()
        assert await asyncio.wait_for(writer.submit(_insert(4)), _ANSWER_WITHIN) == 4

    try:
        asyncio.run(scenario())
    finally:
        reconnect_may_finish.set()
        writer.stop()
    assert connects == 2
    assert _written(database) == [4]


def test_a_write_after_the_writer_stopped_is_refused_at_once(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    writer = _writer(database)
    writer.start()
    writer.stop()

    async def scenario() -> None:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(writer.submit(_insert(3)), _ANSWER_WITHIN)

    asyncio.run(scenario())
    assert _written(database) == []


def test_an_operation_not_registered_is_refused_as_the_writer_process_refuses_it(
    tmp_path: Path,
) -> None:
    """A write operation missing its `@write_operation` would work in one process and fail
    only under `--workers N`: the writer thread refuses it too, before running it."""
    database = tmp_path / "atopos.db"
    writer = _writer(database)
    writer.start()

    def insert_unregistered(conn: sqlite3.Connection, value: int) -> int:
        return _insert(value)(conn)

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="not a registered write operation"):
            await asyncio.wait_for(writer.run(insert_unregistered, 5), _ANSWER_WITHIN)

    try:
        asyncio.run(scenario())
    finally:
        writer.stop()
    assert _written(database) == []
