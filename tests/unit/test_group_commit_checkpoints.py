"""The checkpoint policy both SQLite writers share (storage/sqlite_batches.py): an operation that
returns `Burned` asks for a TRUNCATE checkpoint, due at once after a quiet spell and under load
at most every CHECKPOINT_EVERY seconds; a reader's old snapshot that blocks it leaves it wanted;
the caller gets the operation's result, never the `Burned` wrapper."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.servers import ManualClock

from atopos.storage.sqlite_batches import CHECKPOINT_EVERY, BatchCommitter, Burned

_FAR = 10.0  # seconds: a lock wait that never runs out here


def _committer(database: Path, clock: ManualClock) -> BatchCommitter:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT)")
        return conn

    committer = BatchCommitter(connect, clock, lock_path=None, lock_wait=_FAR)
    committer.open()
    return committer


def _burn(conn: sqlite3.Connection) -> Burned:
    conn.execute("INSERT INTO t (k) VALUES ('burned')")
    return Burned("the caller's result")


def _keep(conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO t (k) VALUES ('kept')")
    return "kept"


def _wal_bytes(database: Path) -> int:
    return database.with_name(database.name + "-wal").stat().st_size


def test_a_burn_asks_for_a_checkpoint_due_at_once_after_a_quiet_spell(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    clock = ManualClock(1000.0)
    committer = _committer(database, clock)
    try:
        assert committer.commit([(_keep, clock.monotonic() + _FAR)]) == [("kept", None)]
        assert committer.checkpoint_wait() is None  # no burn, no checkpoint wanted
        deadline = clock.monotonic() + _FAR
        outcomes = committer.commit([(_keep, deadline), (_burn, deadline)])
        assert outcomes == [("kept", None), ("the caller's result", None)]
        assert committer.checkpoint_wait() == 0.001  # quiet until now: due at once
        committer.checkpoint_if_due()
        assert _wal_bytes(database) == 0
        assert committer.checkpoint_wait() is None
    finally:
        committer.close()


def test_under_load_burns_are_checkpointed_at_most_every_interval(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    clock = ManualClock(1000.0)
    committer = _committer(database, clock)
    try:
        committer.commit([(_burn, clock.monotonic() + _FAR)])
        committer.checkpoint_if_due()
        assert _wal_bytes(database) == 0
        clock.advance(CHECKPOINT_EVERY / 2)
        committer.commit([(_burn, clock.monotonic() + _FAR)])
        assert committer.checkpoint_wait() == CHECKPOINT_EVERY / 2
        committer.checkpoint_if_due()  # not yet: the last one was half an interval ago
        assert _wal_bytes(database) > 0
        clock.advance(CHECKPOINT_EVERY / 2)
        committer.checkpoint_if_due()
        assert _wal_bytes(database) == 0
    finally:
        committer.close()


def test_a_checkpoint_blocked_by_an_old_snapshot_stays_wanted(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    clock = ManualClock(1000.0)
    committer = _committer(database, clock)
    reader = sqlite3.connect(database, isolation_level=None)
    try:
        committer.commit([(_keep, clock.monotonic() + _FAR)])
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # a snapshot before the burn
        committer.commit([(_burn, clock.monotonic() + _FAR)])
        committer.checkpoint()
        assert committer.checkpoint_wait() == CHECKPOINT_EVERY  # tried again an interval later
        reader.execute("COMMIT")
        clock.advance(CHECKPOINT_EVERY)
        committer.checkpoint_if_due()
        assert _wal_bytes(database) == 0
        assert committer.checkpoint_wait() is None
    finally:
        reader.close()
        committer.close()
