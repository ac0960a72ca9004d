"""The writers' lock with a bounded wait (storage/writers_lock.py), against real flocks: a
second open file description of the lock file stands for another process (flocks of two
descriptions exclude each other as two processes' do; tests/integration/
test_writers_lock_wait.py uses a real second process)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atopos.storage.writers_lock import WritersLock


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "atopos.db-writers.lock"


@contextlib.contextmanager
def other_holder(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def becomes_free(path: Path, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if is_free(path):
            return True
        time.sleep(0.01)  # polling interval
    return False


def test_an_uncontended_turn_holds_the_lock_until_released(lock_path: Path) -> None:
    lock = WritersLock(lock_path, wait_seconds=1)
    try:
        assert lock.acquire()
        assert not is_free(lock_path)
        lock.release()
        assert is_free(lock_path)
    finally:
        lock.close()


def test_a_turn_waits_for_a_holder_that_lets_go_in_time(lock_path: Path) -> None:
    lock = WritersLock(lock_path, wait_seconds=10)
    try:
        with other_holder(lock_path) as fd:
            timer = threading.Timer(0.3, fcntl.flock, (fd, fcntl.LOCK_UN))
            timer.start()
            started = time.monotonic()
            assert lock.acquire()
            assert 0.2 < time.monotonic() - started < 5
            timer.join()
        assert not is_free(lock_path)  # held through the helper's descriptor
        lock.release()
        assert is_free(lock_path)
    finally:
        lock.close()


def test_a_turn_gives_up_after_the_wait_and_holds_nothing(lock_path: Path) -> None:
    lock = WritersLock(lock_path, wait_seconds=0.3)
    try:
        with other_holder(lock_path):
            started = time.monotonic()
            assert not lock.acquire()
            assert 0.25 < time.monotonic() - started < 3
        # The abandoned wait lets go as soon as it gets the lock: others can take it.
        assert becomes_free(lock_path)
        # And the next turn works (fast, or handed over by the helper).
        assert lock.acquire()
        lock.release()
    finally:
        lock.close()


def test_a_later_turn_takes_over_an_abandoned_wait(lock_path: Path) -> None:
    lock = WritersLock(lock_path, wait_seconds=1.0)
    try:
        with other_holder(lock_path) as fd:
            assert not lock.acquire()  # the helper still waits in flock
            timer = threading.Timer(0.2, fcntl.flock, (fd, fcntl.LOCK_UN))
            timer.start()
            assert lock.acquire()
            timer.join()
            assert not is_free(lock_path)
            lock.release()
        assert is_free(lock_path)
    finally:
        lock.close()


def test_closing_while_the_helper_waits_ends_cleanly(lock_path: Path) -> None:
    lock = WritersLock(lock_path, wait_seconds=0.1)
    with other_holder(lock_path):
        assert not lock.acquire()
        lock.close()
    assert becomes_free(lock_path)
