"""The directory that holds the writer process's Unix socket (server/writer_process.py): made
fresh for each node, locked for as long as the node runs, and, at start, the directories that
earlier nodes of this user left behind (killed with SIGKILL, their cleanup never ran) swept.

The lock is a shared BSD lock, `flock(LOCK_SH)`, on the directory's own descriptor, so that
tmp cleaners leave the directory alone: systemd-tmpfiles takes `flock(LOCK_EX | LOCK_NB)` on
a directory before it ages it and skips it when that fails; tmpfiles.d(5): "If the aging
algorithm finds a lock (shared or exclusive) is already taken on some directory/file, it
(and everything below it) is skipped." (Without it, the 10-day rule for /tmp removes the
directory of a node that ran that long, and a worker that connects afresh finds no socket.)
The kernel drops the lock when the last descriptor of its open file description closes, so
a dead node's directory is unlocked: that is how the sweep tells it from a live one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DIRECTORY_PREFIX", "SOCKET_NAME", "locked_socket_directory"]

DIRECTORY_PREFIX = "atopos-writer-"
SOCKET_NAME = "writer.sock"

_log = logging.getLogger("atopos.server")
# O_NOFOLLOW: a symlink planted under our prefix is never opened, so never swept through.
# O_NONBLOCK: opening something that is not a directory (a FIFO) fails at once. O_CLOEXEC:
# the forked workers and writer process keep the descriptor (fork does not exec), a
# program the node runs does not.
_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Tries at making a directory that is still ours once locked (a cleaner that ignores locks
# could remove it between the two).
_MAKE_TRIES = 3


@contextlib.contextmanager
def locked_socket_directory(parent: Path) -> Iterator[Path]:
    """A fresh directory (0700) in `parent` for the socket `SOCKET_NAME`, locked until the
    context ends and then removed; the stale ones of earlier nodes are swept first.

    The calling process holds the lock; the processes it forks meanwhile share it (flock
    belongs to the open file description), so it lasts while any of them runs."""
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _sweep_stale_directories(parent_fd, parent)
        name, directory_fd = _make_locked_directory(parent_fd, parent)
        try:
            yield parent / name
        finally:
            with contextlib.suppress(OSError):
                _remove(parent_fd, name, directory_fd)
            os.close(directory_fd)
    finally:
        os.close(parent_fd)


def _make_locked_directory(parent_fd: int, parent: Path) -> tuple[str, int]:
    """Its name and its open, locked descriptor. The lock is taken before the socket is
    bound in it: a directory without the socket is never swept (see `_is_stale`), so a
    node sweeping at the same moment cannot take a fresh one for a stale one."""
    for _ in range(_MAKE_TRIES):
        name = Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX, dir=parent)).name
        directory_fd = os.open(name, _OPEN_DIRECTORY, dir_fd=parent_fd)
        try:
            os.fchmod(directory_fd, 0o700)
            # Blocking: a sweeping node holds it exclusively only while it looks inside.
            fcntl.flock(directory_fd, fcntl.LOCK_SH)
            if _names(parent_fd, name, directory_fd):
                return name, directory_fd
        except BaseException:
            os.close(directory_fd)
            raise
        os.close(directory_fd)
    raise OSError(errno.ENOENT, "the writer socket's directory kept disappearing", str(parent))


def _sweep_stale_directories(parent_fd: int, parent: Path) -> None:
    """Remove the socket directories in `parent` that earlier nodes of this user left."""
    removed = 0
    for name in os.listdir(parent_fd):
        if not name.startswith(DIRECTORY_PREFIX):
            continue
        try:
            directory_fd = os.open(name, _OPEN_DIRECTORY, dir_fd=parent_fd)
        except OSError:
            continue  # a symlink, not a directory, not readable by us, or gone meanwhile
        try:
            if _is_stale(directory_fd, parent) and _remove(parent_fd, name, directory_fd):
                removed += 1
        except OSError:
            pass  # it changed under us: left for the next start
        finally:
            os.close(directory_fd)  # and with it the lock `_is_stale` took
    if removed:
        _log.info(
            "removed writer socket directories that stopped nodes left",
            extra={"removed": removed},
        )


def _is_stale(directory_fd: int, parent: Path) -> bool:
    """Whether the directory open at `directory_fd` is a dead node's: this user's, unlocked
    (then locked here, exclusively, until the descriptor closes), holding just the socket,
    and nobody listening on it."""
    status = os.fstat(directory_fd)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
        return False
    try:
        fcntl.flock(directory_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live node holds it
    entries = os.listdir(directory_fd)
    if not entries:
        return False  # a node making it right now (it locks before it binds the socket)
    socket_status = (
        os.stat(SOCKET_NAME, dir_fd=directory_fd, follow_symlinks=False)
        if entries == [SOCKET_NAME]
        else None
    )
    if socket_status is None or not stat.S_ISSOCK(socket_status.st_mode):
        _log.warning(
            "a writer socket directory holds files the node did not make; left in place",
            extra={"temp_dir": str(parent)},
        )
        return False
    if not _is_dead_socket(directory_fd):
        # A node of a version that took no lock, still running.
        _log.warning(
            "an unlocked writer socket directory whose socket may be in use; left in place",
            extra={"temp_dir": str(parent)},
        )
        return False
    return True


def _is_dead_socket(directory_fd: int) -> bool:
    """Whether connecting to the socket in the directory is refused (nobody listens). It is
    reached through the descriptor, never through a name that could be swapped meanwhile."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(1.0)  # a live listener with a full backlog: cannot tell, so not dead
    try:
        probe.connect(f"/proc/self/fd/{directory_fd}/{SOCKET_NAME}")
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def _remove(parent_fd: int, name: str, directory_fd: int) -> bool:
    """Remove the socket in the directory open at `directory_fd` and then the directory, if
    `name` still names that one (never what a name swapped meanwhile points at); whether it
    is gone. Anything else in it stays, and so does the directory."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SOCKET_NAME, dir_fd=directory_fd)
    if not _names(parent_fd, name, directory_fd):
        return False
    os.rmdir(name, dir_fd=parent_fd)
    return True


def _names(parent_fd: int, name: str, directory_fd: int) -> bool:
    """Whether `name` in the parent is the directory open at `directory_fd` (not a symlink,
    not another directory made since under that name)."""
    try:
        named = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(directory_fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
