"""The directory of the writer process's socket (server/writer_socket_directory.py) under
`atopos serve --workers 2`, for real: it is locked while the node runs (tmp cleaners skip a
locked directory); the next node sweeps the one a node killed with SIGKILL left, and nothing
else (never through a symlink, never one whose lock is held, another user's, one with files
the node did not make, or one whose socket answers); a worker whose socket path is gone says
so once in the log, in words. Every node here has a $TMPDIR of its test's own."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration import test_workers as workers
from tests.integration import test_workers_writer_process as writer_tests
from tests.servers import ServerProcess, children_of, serve_with_a_long_tmpdir

_PREFIX = "atopos-writer-"
_SOCKET = "writer.sock"
_SOCKET_GONE = "writer process unreachable: its socket file is gone"
_SWEPT = "removed writer socket directories that stopped nodes left"
# A uid that is not the test's (the sweep leaves another user's directories alone).
_NOBODY = 65534


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    """The nodes' $TMPDIR: their sweep sees this test's entries only, never the real /tmp's.
    Not in tmp_path, whose path (longer under pytest-xdist) leaves too little of the 107
    bytes a Unix socket path may have."""
    directory = Path(tempfile.mkdtemp(prefix="atopos-t-"))
    assert len(f"{directory}/{_PREFIX}xxxxxxxx/{_SOCKET}") <= 107
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _node(tmp_path: Path, temp_dir: Path) -> ServerProcess:
    return ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"ATOPOS_WORKERS": "2", "TMPDIR": str(temp_dir)},
    )


@contextlib.contextmanager
def _running(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _socket_directories(temp_dir: Path) -> set[Path]:
    return {
        path
        for path in temp_dir.iterdir()
        if path.name.startswith(_PREFIX) and path.is_dir() and not path.is_symlink()
    }


def _dead_socket(path: Path) -> None:
    """A socket file nobody listens on, as a killed node leaves it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


def _planted_directory(temp_dir: Path, name: str) -> Path:
    directory = temp_dir / f"{_PREFIX}{name}"
    directory.mkdir(mode=0o700)
    _dead_socket(directory / _SOCKET)
    return directory


def test_the_socket_directory_is_locked_while_the_node_runs(tmp_path: Path, temp_dir: Path) -> None:
    with _running(_node(tmp_path, temp_dir)) as server:
        [directory] = _socket_directories(temp_dir)
        assert (directory / _SOCKET).is_socket()
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # What systemd-tmpfiles tries before it ages a directory: refused.
            with pytest.raises(BlockingIOError):
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(descriptor)
        with httpx.Client(timeout=30) as client:
            assert writer_tests._create(client, server.url).status_code == 201
    assert not directory.exists()  # removed at a clean stop


def test_a_new_node_sweeps_what_a_killed_node_left_and_nothing_else(
    tmp_path: Path, temp_dir: Path
) -> None:
    killed = _node(tmp_path, temp_dir).start()
    [left] = _socket_directories(temp_dir)
    children = children_of(killed)
    killed.kill9()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    workers._wait_for(lambda: all(workers._is_gone(pid) for pid in children))
    assert (left / _SOCKET).is_socket()  # its cleanup never ran

    # A live process's directory: its lock is held (shared, as a node holds it).
    held = _planted_directory(temp_dir, "held")
    held_descriptor = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held_descriptor, fcntl.LOCK_SH)
    # A node of a version that took no lock: no lock, but its socket is listened on.
    older = temp_dir / f"{_PREFIX}older"
    older.mkdir(mode=0o700)
    older_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    older_listener.bind(str(older / _SOCKET))
    older_listener.listen(8)
    # Files the node did not make.
    odd = _planted_directory(temp_dir, "odd")
    (odd / "notes.txt").write_text("not the node's")
    # Being made by a node right now (it locks before it binds its socket).
    empty = temp_dir / f"{_PREFIX}empty"
    empty.mkdir(mode=0o700)
    # A symlink to a directory that would look stale if it were followed.
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    _dead_socket(target / _SOCKET)
    evil = temp_dir / f"{_PREFIX}evil"
    evil.symlink_to(target, target_is_directory=True)
    planted = {held, older, odd, empty}
    # Another user's (only root can make one for another user).
    other = temp_dir / f"{_PREFIX}other"
    is_root = os.geteuid() == 0
    if is_root:
        _planted_directory(temp_dir, "other")
        os.chown(other / _SOCKET, _NOBODY, _NOBODY)
        os.chown(other, _NOBODY, _NOBODY)
        planted.add(other)

    try:
        before = _socket_directories(temp_dir)
        with _running(_node(tmp_path, temp_dir)) as server:
            assert not left.exists()
            assert (held / _SOCKET).is_socket()
            assert (older / _SOCKET).is_socket()
            assert (odd / _SOCKET).is_socket()
            assert (odd / "notes.txt").read_text() == "not the node's"
            assert empty.is_dir()
            assert evil.is_symlink()
            assert (target / _SOCKET).is_socket()
            if is_root:
                assert (other / _SOCKET).is_socket()
            # The new node's own directory, beside what it left alone.
            [own] = _socket_directories(temp_dir) - before
            assert (own / _SOCKET).is_socket()
            assert _socket_directories(temp_dir) - {own} == planted
            with httpx.Client(timeout=30) as client:
                assert writer_tests._create(client, server.url).status_code == 201
        output = server.output()
        assert output.count(_SWEPT) == 1
        assert "holds files the node did not make; left in place" in output
        assert "whose socket may be in use; left in place" in output
    finally:
        os.close(held_descriptor)
        older_listener.close()


def test_a_worker_whose_socket_path_is_gone_says_so_once(tmp_path: Path, temp_dir: Path) -> None:
    with _running(_node(tmp_path, temp_dir)) as server:
        [directory] = _socket_directories(temp_dir)
        with httpx.Client(timeout=30) as client:
            assert writer_tests._create(client, server.url).status_code == 201
            # A cleaner that ignores the lock removes the directory; the workers' connections
            # to the writer process then end (it is killed and started again), so their next
            # writes connect afresh.
            shutil.rmtree(directory)
            writer = writer_tests._writer_of(server)
            assert writer is not None
            os.kill(writer, signal.SIGKILL)
            workers._wait_for(lambda: writer_tests._writer_of(server) not in (None, writer))
            statuses = [writer_tests._create(client, server.url).status_code for _ in range(8)]
        assert statuses == [503] * 8
    output = server.output()
    # Once per worker that tried (one here: one client connection), not once per write.
    assert 1 <= output.count(_SOCKET_GONE) <= 2, output
    assert "Traceback" not in output


def test_a_temporary_directory_too_long_for_the_socket_is_one_sentence(tmp_path: Path) -> None:
    """bind() would fail with "AF_UNIX path too long", which the node used to report as an
    input/output error: it names the path and the cure, exits 2 and leaves nothing behind."""
    long_dir, last_line = serve_with_a_long_tmpdir(tmp_path, "--workers", "2")
    assert last_line.startswith("Error: The path of the writer process's socket, ")
    assert f"{long_dir}/{_PREFIX}" in last_line
    assert "set TMPDIR to a shorter directory" in last_line
