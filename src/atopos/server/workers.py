"""Several worker processes for one node (`atopos serve --workers N`), under one supervisor.

The supervisor binds one listening socket per worker, all on the node's port with
SO_REUSEPORT (server/runner.py), then forks the workers; worker i runs the whole app on its
own event loop and accepts from socket i only, so the kernel spreads the connections over
them by a hash of each connection's addresses and ports and the node uses every core (one
shared socket gave most connections of a burst to one worker). The supervisor keeps every
socket open: a worker restarted after a crash gets the same index, so the same socket and
the connections waiting in its backlog. What must be one across the node is
made before the fork or kept outside the processes: the node keys (challenges and tickets
that one worker issued pass at any other) are drawn once in the supervisor; the store is one
SQLite file in WAL mode that every worker reads, and that one writer process writes: the
supervisor forks it before the workers, and it runs the group commit for all of them
(storage/sqlite_writer_process.py; a 201 still follows an fsync); redeemed ticket ids
live in that store; rate-limit counters are in a rate-limit Redis when there is one, and
otherwise in a table of anonymous shared memory made before the fork
(server/shared_counters.py). docs/operations.md, "Worker processes", says what stays per
worker.

The supervisor restarts a worker (or the writer process) that dies, forwards SIGTERM and SIGINT
to the workers as a SIGTERM (each finishes its requests), then, once they have all ended, stops
the writer process by closing its end of the pipe the writer watches (the writer ignores
SIGTERM, which systemd sends every process of the unit at once), and exits. A worker whose
supervisor is gone (kill -9) sees its end of a pipe close and stops too; so does the writer
process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from atopos.clock import Clock

__all__ = ["WorkerSupervisor"]

_log = logging.getLogger("atopos.server")
# A worker that dies this soon after it started, this many times in a row, will not do better
# when started again: the supervisor stops the node instead of forking forever.
_EARLY_DEATH_SECONDS = 2.0
_EARLY_DEATHS_TO_GIVE_UP = 5
# The index of the writer process among the children (workers are 0 to count - 1).
_WRITER = -1


class WorkerSupervisor:
    def __init__(
        self,
        count: int,
        work: Callable[[int], None],
        clock: Clock,
        *,
        write: Callable[[int], None] | None = None,
    ) -> None:
        """`work(index)` runs one worker to its end, in the forked child; a worker started
        again after it died is given the same index (0 to count - 1). `write(parent_gone)`,
        if given, runs the writer process to its end, forked before the workers;
        `parent_gone` is a descriptor that reaches its end when the supervisor is gone."""
        self._count = count
        self._work = work
        self._write = write
        self._clock = clock
        self._workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self._is_stopping = False
        self._early_deaths = 0
        self._watch_read, self._watch_write = -1, -1

    def run(self) -> int:
        """Fork the workers and keep them running until a signal; the exit status (0, or 1
        when the workers kept dying at start)."""
        self._watch_read, self._watch_write = os.pipe()
        previous = {signum: signal.signal(signum, self._forward) for signum in _FORWARDED_SIGNALS}
        try:
            if self._write is not None:
                self._spawn(_WRITER)
            for index in range(self._count):
                if not self._is_stopping:
                    self._spawn(index)
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._watch_read)
            if self._watch_write >= 0:
                os.close(self._watch_write)

    def _supervise(self) -> int:
        status = 0
        while self._workers:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            entry = self._workers.pop(pid, None)
            if self._is_stopping:
                if entry is not None and entry[0] == _WRITER and self._watch_write >= 0:
                    # Workers are still finishing their requests, and need it to write.
                    _log.warning("writer process exited while stopping; starting another")
                    self._spawn(_WRITER)
                else:
                    self._stop_writer_after_workers()
                continue
            if entry is None:
                continue
            index, started = entry
            code = os.waitstatus_to_exitcode(wait_status)
            if self._clock.monotonic() - started < _EARLY_DEATH_SECONDS:
                self._early_deaths += 1
            else:
                self._early_deaths = 0
            if self._early_deaths >= _EARLY_DEATHS_TO_GIVE_UP:
                _log.error("workers keep exiting at start; stopping", extra={"exit": code})
                status = 1
                self._stop_all()
                continue
            if index == _WRITER:
                _log.warning("writer process exited; starting another", extra={"exit": code})
            else:
                _log.warning(
                    "worker exited; starting another", extra={"worker": index, "exit": code}
                )
            self._spawn(index)
        return status

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        _log.info("stopping workers", extra={"signal": signal.Signals(signum).name})
        self._stop_all()

    def _stop_all(self) -> None:
        self._is_stopping = True
        for pid, (index, _started) in list(self._workers.items()):
            if index != _WRITER:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        self._stop_writer_after_workers()

    def _stop_writer_after_workers(self) -> None:
        """Stop the writer process once no worker is left to write through it: the end of
        the pipe it watches (it ignores SIGTERM, see the module docstring)."""
        is_worker_left = any(index != _WRITER for index, _started in self._workers.values())
        if not is_worker_left and self._watch_write >= 0:
            os.close(self._watch_write)
            self._watch_write = -1

    def _spawn(self, index: int) -> None:
        # The forwarded signals wait until the new worker is on the list: a SIGTERM arriving
        # between the fork and that would otherwise stop every worker but this one (which the
        # supervisor then waits for forever), and in the child it would run `_forward`.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED_SIGNALS)
            raise
        if pid:
            self._workers[pid] = (index, self._clock.monotonic())
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED_SIGNALS)
            if self._is_stopping and index != _WRITER:
                self._stop_all()
            return
        status = 1
        try:
            # A group of its own: Ctrl-C on a terminal reaches the supervisor, which forwards
            # one SIGTERM, and not every worker twice.
            os.setpgid(0, 0)
            # The writer process ignores them from the start: it ends with the pipe.
            disposition = signal.SIG_IGN if index == _WRITER else signal.SIG_DFL
            for signum in _FORWARDED_SIGNALS:
                signal.signal(signum, disposition)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED_SIGNALS)
            os.close(self._watch_write)
            if index == _WRITER and self._write is not None:
                self._write(self._watch_read)
            else:
                _stop_with_parent(self._watch_read)
                self._work(index)
            status = 0
        except BaseException:
            if index == _WRITER:
                _log.error("writer process failed", exc_info=True)
            else:
                _log.error("worker failed", exc_info=True, extra={"worker": index})
        finally:
            os._exit(status)


_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _stop_with_parent(read_end: int) -> None:
    """SIGTERM this worker when the supervisor's end of the pipe closes (it died)."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(read_end, 1):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="atopos-supervisor-watch").start()
