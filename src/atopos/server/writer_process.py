"""The SQLite writer process of `atopos serve --workers N` as the supervisor sets it up: its
Unix socket, made before the fork in a fresh private directory, and its run in the child.

The directory is made in the temporary directory ($TMPDIR, else /tmp), 0700, so only this
user reaches the socket (the frames are pickles, storage/sqlite_writer_frames.py), and short,
since a Unix socket path holds at most 107 bytes, so it is not beside the database. It is
locked for the node's life, so tmp cleaners leave it alone, and stale ones of killed nodes are
swept at start (server/writer_socket_directory.py). The supervisor keeps the listening socket
open for the node's life: a writer process restarted after a crash listens on the same one,
and workers that connect meanwhile wait in its backlog. The directory is removed at exit.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from atopos.clock import SystemClock
from atopos.server.unix_socket_path import require_short_socket_path
from atopos.server.writer_socket_directory import SOCKET_NAME, locked_socket_directory
from atopos.storage.sqlite import connect_writer, writers_lock_path
from atopos.storage.sqlite_batches import BatchCommitter
from atopos.storage.sqlite_writer_process import serve_writes

__all__ = ["WRITER_PROCESS_NAME", "WriterSocket", "run_writer_process", "writer_socket"]

# The writer process's name in ps and top (Linux: /proc/PID/comm), so that an operator, or a
# test, tells it from the workers.
WRITER_PROCESS_NAME = "atopos-writer"

_BACKLOG = 128


class WriterSocket:
    """The writer process's listening socket and its path."""

    def __init__(self, listener: socket.socket, path: Path) -> None:
        self.listener = listener
        self.path = path


@contextlib.contextmanager
def writer_socket(parent: Path | None = None) -> Iterator[WriterSocket]:
    """The writer process's listening socket, in a locked directory of its own in `parent`
    (the temporary directory by default), until the context ends; the calling process (the
    supervisor) and the processes it forks meanwhile hold the lock."""
    temp_dir = Path(tempfile.gettempdir()) if parent is None else parent
    with locked_socket_directory(temp_dir) as directory:
        path = directory / SOCKET_NAME
        require_short_socket_path(path, "the writer process's socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            listener.listen(_BACKLOG)
            yield WriterSocket(listener, path)
        finally:
            listener.close()


def run_writer_process(
    listener: socket.socket, database: Path, lock_wait: float, parent_gone: int, workers: int
) -> None:
    """The writer process's whole life (in the forked child): commit the writes of the
    node's `workers` to `database` until the supervisor closes `parent_gone` (after the last
    worker ended) or dies; SIGTERM and SIGINT are ignored
    (storage/sqlite_writer_process.py)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(WRITER_PROCESS_NAME)
    clock = SystemClock()
    committer = BatchCommitter(
        lambda: connect_writer(database),
        clock,
        lock_path=writers_lock_path(database),
        lock_wait=lock_wait,
    )
    # One connection per worker, and as many again for workers restarted before the writer
    # saw their predecessors' connections end.
    serve_writes(listener, committer, clock, max_connections=2 * workers, parent_gone=parent_gone)
