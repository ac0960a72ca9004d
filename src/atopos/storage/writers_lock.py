"""The writers' lock of an SQLite file that several processes write (`atopos serve --workers N`),
with a bounded wait.

An exclusive flock on a lock file beside the database (never the database itself: closing a
descriptor of it would drop SQLite's own POSIX locks in this process). The kernel wakes a
blocked flock the moment the lock is free and releases it when its holder dies (kill -9
included), but a blocked flock cannot be given a time limit. So an uncontended turn is one
non-blocking flock, and a contended one is waited for by a helper thread on a second
descriptor of the file (flocks of two open file descriptions exclude each other, as two
processes' do) while the writer waits at most `wait_seconds` for it. A wait that runs out is
abandoned: the helper lets go of the lock as soon as it gets it, unless a later turn is by
then waiting for it, which then takes it over.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

__all__ = ["WritersLock"]


class WritersLock:
    """Turns on one lock file, each waited for at most `wait_seconds`."""

    def __init__(self, path: Path, wait_seconds: float) -> None:
        self._wait_seconds = wait_seconds
        self._fast_fd = _open(path)
        self._waiter_fd = _open(path)
        self._held_fd: int | None = None
        self._changed = threading.Condition()
        self._is_wanted = False  # a turn waits for the helper's flock
        self._is_handed_over = False  # the helper holds the lock for that turn
        self._is_closing = False
        self._helper: threading.Thread | None = None

    def acquire(self, wait_seconds: float | None = None) -> bool:
        """Take the lock; False when it was not free within `wait_seconds` (None: the lock's
        own; 0: only if it is free now), in which case this process holds nothing."""
        if self._held_fd is not None:
            raise RuntimeError("the writers' lock is already held by this process")
        if _try_flock(self._fast_fd):
            self._held_fd = self._fast_fd
            return True
        with self._changed:
            self._start_helper()
            self._is_wanted = True
            self._changed.notify_all()
            wait = self._wait_seconds if wait_seconds is None else max(0.0, wait_seconds)
            if self._changed.wait_for(lambda: self._is_handed_over, wait):
                self._is_handed_over = False
                self._held_fd = self._waiter_fd
                return True
            self._is_wanted = False  # abandoned: the helper lets go when it gets the lock
            return False

    def release(self) -> None:
        if self._held_fd is None:
            return
        held, self._held_fd = self._held_fd, None
        if held == self._waiter_fd:
            with self._changed:
                fcntl.flock(held, fcntl.LOCK_UN)
                self._changed.notify_all()  # the helper may wait for the next turn
        else:
            fcntl.flock(held, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the lock and close the files. A helper still blocked in flock (an abandoned
        wait on a holder that has not let go) ends, closing its descriptor, once it gets the
        lock, which it then lets go at once."""
        self.release()
        with self._changed:
            self._is_closing = True
            self._changed.notify_all()
            has_helper = self._helper is not None
        os.close(self._fast_fd)
        if not has_helper:
            os.close(self._waiter_fd)
        # Otherwise the helper closes it when it ends (perhaps still blocked in flock now).

    def _start_helper(self) -> None:
        if self._helper is None:
            self._helper = threading.Thread(
                target=self._wait_for_turns, name="atopos-writers-lock", daemon=True
            )
            self._helper.start()

    def _wait_for_turns(self) -> None:
        """The helper: block in flock whenever a turn waits, and hand the lock over."""
        try:
            self._hand_over_turns()
        finally:
            os.close(self._waiter_fd)

    def _hand_over_turns(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: (
                        self._is_closing
                        or (self._is_wanted and self._held_fd is None and not self._is_handed_over)
                    )
                )
                if self._is_closing:
                    break
            fcntl.flock(self._waiter_fd, fcntl.LOCK_EX)
            with self._changed:
                if self._is_wanted and not self._is_closing:
                    self._is_wanted = False
                    self._is_handed_over = True
                    self._changed.notify_all()
                    # Wait until that turn released it before blocking again.
                    self._changed.wait_for(
                        lambda: (
                            self._is_closing or (not self._is_handed_over and self._held_fd is None)
                        )
                    )
                else:
                    fcntl.flock(self._waiter_fd, fcntl.LOCK_UN)
                if self._is_closing:
                    break


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
