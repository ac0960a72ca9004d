"""The workers' shared counter table (server/shared_counters.py) across real processes:
concurrent hits on one key lose no update and admit exactly the limit, and a process killed
(or stopped) while it holds the table's lock does not wedge the others."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection

import pytest

from atopos.clock import SystemClock
from atopos.errors import Unavailable
from atopos.randomness import system_random_bytes
from atopos.server import shared_counters
from atopos.server.ratelimit import RateLimits
from atopos.server.shared_counter_storage import SharedCounterStorage
from atopos.server.shared_counters import STUCK_AFTER, SharedCounterTable

_PROCESSES = 4
_HITS_EACH = 20_000
# Long enough that no window ends while a test runs (1e9 seconds is about 31 years).
_EXPIRY = 1_000_000_000
_FORK = multiprocessing.get_context("fork")


def _table() -> SharedCounterTable:
    return SharedCounterTable(SystemClock(), system_random_bytes, slots=1024)


def _hammer(table: SharedCounterTable, limit: int, start: object, answers: Connection) -> None:
    start.wait()  # type: ignore[attr-defined]
    admitted = sum(table.acquire("one client", _EXPIRY, limit, 1) for _ in range(_HITS_EACH))
    answers.send(admitted)


def _run_hammers(table: SharedCounterTable, limit: int) -> list[int]:
    start = _FORK.Event()
    pipes = [_FORK.Pipe(duplex=False) for _ in range(_PROCESSES)]
    processes = [
        _FORK.Process(target=_hammer, args=(table, limit, start, sender)) for _, sender in pipes
    ]
    for process in processes:
        process.start()
    start.set()
    admitted = [receiver.recv() for receiver, _ in pipes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return admitted


def test_concurrent_hits_from_several_processes_lose_no_update() -> None:
    table = _table()
    admitted = _run_hammers(table, limit=10**9)
    assert admitted == [_HITS_EACH] * _PROCESSES
    assert table.window("one client", _EXPIRY)[2] == _PROCESSES * _HITS_EACH


def test_concurrent_hits_admit_exactly_the_limit() -> None:
    table = _table()
    limit = _PROCESSES * _HITS_EACH // 2 + 7
    admitted = _run_hammers(table, limit=limit)
    assert sum(admitted) == limit
    assert sum(1 for count in admitted if count) > 1  # the processes did race
    assert table.window("one client", _EXPIRY)[2] == limit


def _hold_the_lock(table: SharedCounterTable, ready: Connection) -> None:
    # The private context manager: the test needs a process to die while it holds the lock.
    with table._held():
        ready.send(os.getpid())
        time.sleep(600)


def _holder(table: SharedCounterTable) -> multiprocessing.process.BaseProcess:
    receiver, sender = _FORK.Pipe(duplex=False)
    holder = _FORK.Process(target=_hold_the_lock, args=(table, sender))
    holder.start()
    assert receiver.poll(30)
    assert receiver.recv() == holder.pid
    return holder


def _timed_acquire(table: SharedCounterTable) -> float:
    started = time.monotonic()
    assert table.acquire("after", _EXPIRY, 10**6, 1)
    return time.monotonic() - started


def test_a_process_killed_holding_the_lock_is_taken_over_at_once() -> None:
    table = _table()
    holder = _holder(table)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=30)  # reaped, as the supervisor reaps a dead worker
    assert _timed_acquire(table) < STUCK_AFTER / 2
    # The lock works on as before: taken and released normally, never waited for.
    assert max(_timed_acquire(table) for _ in range(100)) < STUCK_AFTER / 2


def test_an_unreaped_or_stopped_holder_is_taken_over_after_stuck_after() -> None:
    table = _table()
    holder = _holder(table)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        waited = _timed_acquire(table)
        assert STUCK_AFTER <= waited < STUCK_AFTER + 1.5
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
    assert _timed_acquire(table) < STUCK_AFTER / 2


@pytest.mark.parametrize("hits", [1, 50])
def test_a_process_that_exits_normally_leaves_the_lock_free(hits: int) -> None:
    table = _table()
    process = _FORK.Process(
        target=lambda: [table.acquire("child", _EXPIRY, 10**6, 1) for _ in range(hits)]
    )
    process.start()
    process.join(timeout=30)
    assert process.exitcode == 0
    assert _timed_acquire(table) < STUCK_AFTER / 2
    assert table.window("child", _EXPIRY)[2] == hits


def _hold_until_told(table: SharedCounterTable, ready: Connection, go: object) -> None:
    with table._held():
        ready.send(os.getpid())
        go.wait()  # type: ignore[attr-defined]


def test_a_holder_that_resumes_after_a_take_over_leaves_the_new_holders_lock_alone() -> None:
    table = _table()
    receiver, sender = _FORK.Pipe(duplex=False)
    go = _FORK.Event()
    holder = _FORK.Process(target=_hold_until_told, args=(table, sender, go))
    holder.start()
    assert receiver.poll(30)
    assert receiver.recv() == holder.pid
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        with table._held():  # taken over after STUCK_AFTER
            os.kill(holder.pid, signal.SIGCONT)
            go.set()
            holder.join(timeout=30)
            assert holder.exitcode == 0  # it left its `with`, releasing what it held
            # Its release must not have freed the lock that this process now holds.
            assert not table._lock.acquire(False)
        # Released once, by this process.
        assert table._lock.acquire(False)
        table._lock.release()
    finally:
        if holder.is_alive():
            os.kill(holder.pid, signal.SIGKILL)
            holder.join(timeout=30)
    assert _timed_acquire(table) < STUCK_AFTER / 2


def test_a_waiter_that_gives_up_answers_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """TableBusy reaches RateLimits as `limits`' StorageError: a 503, never a 500. (Giving
    up before STUCK_AFTER stands in for a live holder that keeps the lock from this waiter.)"""
    monkeypatch.setattr(shared_counters, "_GIVE_UP_AFTER", STUCK_AFTER / 5)
    table = _table()
    limits = RateLimits({"create": 5}, SharedCounterStorage(table), clock=SystemClock())
    holder = _holder(table)
    assert holder.pid is not None
    try:
        with pytest.raises(Unavailable):
            asyncio.run(limits.hit("create", "client"))
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
    asyncio.run(limits.hit("create", "client"))  # the dead holder is taken over
