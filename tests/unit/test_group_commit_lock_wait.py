"""The group-commit writer's bounded wait for the writers' lock (storage/sqlite_writer.py,
docs/operations.md "Worker processes"): while another holder keeps the lock, every write is
answered Unavailable within about ATOPOS_WRITER_LOCK_WAIT of its submission, however many
batches are queued before it, and nothing of it is written. A second open file description
of the lock file stands for the stuck worker (flocks of two descriptions exclude each other
as two processes' do)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atopos.errors import Unavailable
from atopos.storage.sqlite import SqliteSecretStore
from atopos.storage.sqlite_batches import BUSY_MESSAGE
from atopos.storage.sqlite_writer import GroupCommitWriter

_WAIT = 0.5
# More than two batches of the writer (it takes at most 512 operations at a time).
_WRITES = 1300


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "atopos.db"


@contextlib.contextmanager
def writer_of(database: Path) -> Iterator[GroupCommitWriter]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS written (value INTEGER)")
        return conn

    writer = GroupCommitWriter(
        connect, lock_path=database.with_name(database.name + "-writers.lock"), lock_wait=_WAIT
    )
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()


@contextlib.contextmanager
def stuck_holder(database: Path) -> Iterator[None]:
    fd = os.open(database.with_name(database.name + "-writers.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def written(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM written").fetchone()
    return int(count)


def _write_all(writer: GroupCommitWriter) -> list[tuple[float, BaseException | None]]:
    """Submit `_WRITES` inserts at once: (seconds from submission to answer, error)."""

    async def scenario() -> list[tuple[float, BaseException | None]]:
        async def one(value: int) -> tuple[float, BaseException | None]:
            started = time.monotonic()
            try:
                await writer.submit(
                    lambda conn: conn.execute("INSERT INTO written VALUES (?)", (value,))
                )
            except Unavailable as exc:
                return time.monotonic() - started, exc
            return time.monotonic() - started, None

        return list(await asyncio.gather(*(one(value) for value in range(_WRITES))))

    return asyncio.run(scenario())


def test_every_queued_write_gives_up_within_about_the_wait(database: Path) -> None:
    with writer_of(database) as writer:
        with stuck_holder(database):
            answers = _write_all(writer)
        assert all(isinstance(error, Unavailable) for _, error in answers)
        assert {str(error) for _, error in answers} == {BUSY_MESSAGE}
        # Each write waited its bound once, not once per batch queued before it.
        slowest = max(seconds for seconds, _ in answers)
        assert _WAIT * 0.9 <= slowest < _WAIT * 1.8
        assert written(database) == 0
        # The lock free again: every write goes through, each once.
        answers = _write_all(writer)
        assert [error for _, error in answers] == [None] * _WRITES
        assert written(database) == _WRITES


def test_a_worker_starts_while_another_holds_the_lock(tmp_path: Path) -> None:
    """The sweep at start is skipped (the periodic one does it), not the worker: a store
    shared by workers starts within about the wait while the lock is held, then writes once
    it is free. Before, the busy sweep failed the worker's start with a traceback."""
    database = tmp_path / "atopos.db"
    store = SqliteSecretStore(database, is_shared_by_processes=True, writer_lock_wait=_WAIT)
    with stuck_holder(database):
        started = time.monotonic()
        asyncio.run(store.start(0))
        assert time.monotonic() - started < _WAIT * 4

    async def swept_then_closed() -> int:
        try:
            return await store.sweep(0)
        finally:
            await store.aclose()

    assert asyncio.run(swept_then_closed()) == 0
