"""The SQLite writer process of `atopos serve --workers N` (storage/sqlite_writer_process.py),
forked for real on a real SQLite file: it commits the writes of several workers' connections
in one transaction, refuses operations it has not registered, and a frame over the cap ends
that connection only."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import sqlite3
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atopos.clock import SystemClock
from atopos.errors import Unavailable
from atopos.server.writer_process import run_writer_process, writer_socket
from atopos.storage.sqlite import writers_lock_path
from atopos.storage.sqlite_batches import WritersBusy
from atopos.storage.sqlite_remote_writer import RemoteWriter
from atopos.storage.sqlite_write_operations import write_operation
from atopos.storage.sqlite_writer_frames import (
    MAX_FRAME,
    FrameReader,
    UnknownWriteOperation,
    encode_frame,
    error_from_reply,
)

_CLIENTS = 3
_WRITES_PER_CLIENT = 2
# The workers of the node the test writer process serves: it takes twice as many connections.
_WORKERS = 3


# Test operations, registered before the writer process is forked (so it has them too).
@write_operation
def make_keys_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS test_keys (k TEXT NOT NULL)")


@write_operation
def hold_the_writer(conn: sqlite3.Connection, entered: str, gate: str) -> None:
    """Keep the writer inside this batch (which writes a row) until `gate` exists."""
    conn.execute("INSERT INTO test_keys (k) VALUES ('held')")
    Path(entered).touch()
    deadline = time.monotonic() + 20
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


@write_operation
def insert_key(conn: sqlite3.Connection, key: str) -> str:
    conn.execute("INSERT INTO test_keys (k) VALUES (?)", (key,))
    return key


@contextlib.contextmanager
def writer_process(database: Path) -> Iterator[Path]:
    """A writer process on `database`, forked as the supervisor forks it; its socket's path."""
    with _temp_dir() as temp_dir, writer_socket(temp_dir) as sock:
        parent_gone, supervisor_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(supervisor_end)
                run_writer_process(sock.listener, database, 5.0, parent_gone, _WORKERS)
                status = 0
            finally:
                os._exit(status)
        os.close(parent_gone)
        try:
            yield sock.path
        finally:
            os.close(supervisor_end)  # the "supervisor" is gone: the writer stops
            _reap(pid)


@contextlib.contextmanager
def _temp_dir() -> Iterator[Path]:
    """A temporary directory of the test's own for the writer socket's, so that the sweep at
    start never sees another's; others may pass through it, as through /tmp (one test
    connects as another user)."""
    with tempfile.TemporaryDirectory(prefix="atopos-test-") as temp_dir:
        os.chmod(temp_dir, 0o755)  # noqa: S103 (traversable, not writable)
        yield Path(temp_dir)


def _reap(pid: int, within: float = 10) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"process {pid} did not end in time")


def _in_child(work: Any) -> int:
    """Run `work()` (True: success) in a forked process of its own; its pid."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = 0 if work() else 1
        finally:
            os._exit(status)
    return pid


def _write(socket_path: Path, *calls: tuple[Any, ...]) -> list[Any]:
    async def scenario() -> list[Any]:
        writer = RemoteWriter(socket_path, SystemClock(), 10.0)
        try:
            return list(await asyncio.gather(*(writer.run(*call) for call in calls)))
        finally:
            await writer.aclose()

    return asyncio.run(scenario())


def _wal_commits(database: Path) -> int:
    """The transactions in the WAL file since it was last reset: its valid commit frames."""
    data = database.with_name(database.name + "-wal").read_bytes()
    if len(data) < 32:
        return 0
    page_size = struct.unpack_from(">I", data, 8)[0]
    salts = data[16:24]
    commits, offset = 0, 32
    while offset + 24 + page_size <= len(data):
        header = data[offset : offset + 24]
        if header[8:16] != salts:
            break  # frames of an earlier generation of the WAL
        if struct.unpack_from(">I", header, 4)[0] != 0:
            commits += 1
        offset += 24 + page_size
    return commits


def _wait_for_file(path: Path, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.01)


def test_writes_of_several_workers_are_committed_in_one_transaction(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    entered, gate = tmp_path / "entered", tmp_path / "gate"
    with writer_process(database) as socket_path:
        _write(socket_path, (make_keys_table,))
        before = _wal_commits(database)
        holder = _in_child(
            lambda: _write(socket_path, (hold_the_writer, str(entered), str(gate))) == [None]
        )
        _wait_for_file(entered)

        def client(index: int) -> bool:
            async def scenario() -> list[Any]:
                writer = RemoteWriter(socket_path, SystemClock(), 10.0)
                keys = [f"{index}-{n}" for n in range(_WRITES_PER_CLIENT)]
                writes = [asyncio.ensure_future(writer.run(insert_key, k)) for k in keys]
                await asyncio.sleep(0.3)  # connected, frames sent
                (tmp_path / f"sent-{index}").touch()
                results = await asyncio.gather(*writes)
                await writer.aclose()
                return results == keys

            return bool(asyncio.run(scenario()))

        clients = [_in_child(lambda i=i: client(i)) for i in range(_CLIENTS)]
        for index in range(_CLIENTS):
            _wait_for_file(tmp_path / f"sent-{index}")
        time.sleep(0.3)  # the frames reach the writer's sockets
        gate.touch()
        assert [_reap(pid, 30) for pid in [holder, *clients]] == [0] * (1 + _CLIENTS)
        # The held batch, then one transaction for every write of every client.
        assert _wal_commits(database) - before == 2
        with contextlib.closing(sqlite3.connect(database)) as conn:
            (count,) = conn.execute("SELECT count(*) FROM test_keys").fetchone()
        assert count == 1 + _CLIENTS * _WRITES_PER_CLIENT


def _request(sock: socket.socket, payload: object) -> Any:
    sock.sendall(encode_frame(payload))
    return _reply_of(sock)


def _reply_of(sock: socket.socket) -> Any:
    """The one reply the writer process sends next on `sock`."""
    frames = FrameReader()
    while True:
        data = sock.recv(65536)
        assert data, "the writer process closed the connection"
        replies = frames.feed(data)
        if replies:
            (reply,) = replies
            return reply


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def test_an_operation_it_has_not_registered_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    with (
        writer_process(database) as socket_path,
        contextlib.closing(_connect(socket_path)) as sock,
    ):
        deadline = time.monotonic() + 10
        for number, name in enumerate(["system", "__class__", "_open", "os.remove", 7]):
            request_id, is_result, value = _request(sock, (number, name, (), deadline))
            assert (request_id, is_result) == (number, False)
            assert isinstance(error_from_reply(value), UnknownWriteOperation)
        # The same connection still runs what is registered.
        assert _request(sock, (9, "make_keys_table", (), deadline)) == (9, True, None)


def test_a_frame_over_the_cap_closes_that_connection_only(tmp_path: Path) -> None:
    database = tmp_path / "atopos.db"
    with (
        writer_process(database) as socket_path,
        contextlib.closing(_connect(socket_path)) as other,
    ):
        deadline = time.monotonic() + 10
        assert _request(other, (1, "make_keys_table", (), deadline)) == (1, True, None)
        with contextlib.closing(_connect(socket_path)) as greedy:
            greedy.sendall(struct.pack(">I", MAX_FRAME + 1) + b"\0" * 4096)
            assert greedy.recv(1) == b""  # closed by the writer process
        reply = _request(other, (2, "insert_key", ("still here",), deadline))
        assert reply == (2, True, "still here")


def test_connections_past_twice_the_workers_are_closed_and_the_others_serve_on(
    tmp_path: Path,
) -> None:
    database = tmp_path / "atopos.db"
    with writer_process(database) as socket_path, contextlib.ExitStack() as stack:
        deadline = time.monotonic() + 10
        admitted = [stack.enter_context(contextlib.closing(_connect(socket_path)))]
        # The first is answered, so the writer process has accepted it before the others.
        assert _request(admitted[0], (0, "make_keys_table", (), deadline)) == (0, True, None)
        admitted += [
            stack.enter_context(contextlib.closing(_connect(socket_path)))
            for _ in range(2 * _WORKERS - 1)
        ]
        for number, sock in enumerate(admitted[1:], start=1):
            assert _request(sock, (number, "insert_key", (f"k{number}",), deadline))[1]
        with contextlib.closing(_connect(socket_path)) as extra:
            try:
                extra.sendall(encode_frame((99, "insert_key", ("extra",), deadline)))
                assert extra.recv(1) == b""  # closed unanswered
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed before the frame was all sent
        # Room again once one of them ends.
        admitted.pop().close()
        _wait_until(lambda: _is_served(socket_path, deadline))
        with contextlib.closing(sqlite3.connect(database)) as conn:
            keys = {k for (k,) in conn.execute("SELECT k FROM test_keys")}
    assert "extra" not in keys
    assert {f"k{n}" for n in range(1, 2 * _WORKERS)} <= keys


def _is_served(socket_path: Path, deadline: float) -> bool:
    with contextlib.closing(_connect(socket_path)) as sock:
        try:
            return bool(_request(sock, (7, "insert_key", ("later",), deadline))[1])
        except (AssertionError, OSError):  # closed: not yet room
            return False


def _wait_until(condition: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def test_a_write_is_not_begun_after_its_deadline_behind_a_later_one(tmp_path: Path) -> None:
    # Writes of several workers that queued while the writers' lock was held reach one batch
    # in no particular order; the batch must not wait for the lock past the earliest deadline
    # among them, or that write commits after its worker answered 503.
    database = tmp_path / "atopos.db"
    with writer_process(database) as socket_path:
        _write(socket_path, (make_keys_table,))
        lock_fd = os.open(writers_lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # another writer of the file holds its turn
            with (
                contextlib.closing(_connect(socket_path)) as first,
                contextlib.closing(_connect(socket_path)) as later,
                contextlib.closing(_connect(socket_path)) as hurried,
            ):
                start = time.monotonic()
                first.sendall(encode_frame((0, "insert_key", ("first",), start + 1.0)))
                time.sleep(0.2)  # the writer process waits for the lock with it
                later.sendall(encode_frame((1, "insert_key", ("later",), start + 4.0)))
                time.sleep(0.1)
                hurried.sendall(encode_frame((2, "insert_key", ("hurried",), start + 1.5)))
                assert _reply_of(first)[:2] == (0, False)
                time.sleep(max(0.0, start + 2.5 - time.monotonic()))
                fcntl.flock(lock_fd, fcntl.LOCK_UN)  # free after the hurried write's deadline
                request_id, is_result, value = _reply_of(hurried)
                assert (request_id, is_result) == (2, False)
                assert isinstance(error_from_reply(value), WritersBusy)
                _reply_of(later)
        finally:
            os.close(lock_fd)
        with contextlib.closing(sqlite3.connect(database)) as conn:
            keys = {k for (k,) in conn.execute("SELECT k FROM test_keys")}
        assert "hurried" not in keys


def test_a_writer_process_that_reads_nothing_costs_a_worker_a_capped_queue(
    tmp_path: Path,
) -> None:
    # A writer process stopped with SIGSTOP accepts (the kernel does) but reads nothing: the
    # worker's writes must not pile up in its memory without end while they wait.
    path = tmp_path / "stalled.sock"
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as listener:
        listener.bind(str(path))
        listener.listen(1)
        chunk = "x" * (1024 * 1024)

        async def scenario() -> list[BaseException | None]:
            writer = RemoteWriter(path, SystemClock(), 0.5)
            try:
                writes = [writer.run(insert_key, chunk) for _ in range(64)]
                outcomes = await asyncio.gather(*writes, return_exceptions=True)
                return [o if isinstance(o, BaseException) else None for o in outcomes]
            finally:
                # Still connected: what the worker queued can now be read and counted.
                await asyncio.to_thread(_count_queued, listener, queued)
                await writer.aclose()

        queued: list[int] = []
        outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes)
    assert queued[0] <= 24 * 1024 * 1024


def _count_queued(listener: socket.socket, into: list[int]) -> None:
    """Accept the one connection and read what it has queued until it goes quiet."""
    sock, _ = listener.accept()
    with contextlib.closing(sock):
        sock.settimeout(1.0)
        total = 0
        with contextlib.suppress(TimeoutError):
            while data := sock.recv(1024 * 1024):
                total += len(data)
        into.append(total)


def test_a_request_with_a_malformed_deadline_closes_that_connection_only(
    tmp_path: Path,
) -> None:
    database = tmp_path / "atopos.db"
    with (
        writer_process(database) as socket_path,
        contextlib.closing(_connect(socket_path)) as other,
    ):
        deadline = time.monotonic() + 10
        assert _request(other, (1, "make_keys_table", (), deadline)) == (1, True, None)
        malformed_requests = [
            (2, "insert_key", ("k",), "soon"),
            (3, "insert_key", 7, deadline),
            # No end to its lock wait: one such write could hold the writer process forever.
            (5, "insert_key", ("k",), float("inf")),
            (6, "insert_key", ("k",), float("nan")),
        ]
        for malformed in malformed_requests:
            with contextlib.closing(_connect(socket_path)) as sloppy:
                sloppy.sendall(encode_frame(malformed))
                assert sloppy.recv(1) == b""  # closed by the writer process
        reply = _request(other, (4, "insert_key", ("still here",), deadline))
        assert reply == (4, True, "still here")


def test_a_write_whose_connection_closed_before_its_batch_is_not_begun(tmp_path: Path) -> None:
    # A worker killed (or its connection broken) after sending a write has answered its
    # client already; the write must not be committed behind its back.
    database = tmp_path / "atopos.db"
    entered, gate = tmp_path / "entered", tmp_path / "gate"
    with writer_process(database) as socket_path:
        _write(socket_path, (make_keys_table,))
        holder = _in_child(
            lambda: _write(socket_path, (hold_the_writer, str(entered), str(gate))) == [None]
        )
        _wait_for_file(entered)  # the writer process is busy with another batch
        with contextlib.closing(_connect(socket_path)) as gone:
            deadline = time.monotonic() + 10
            gone.sendall(encode_frame((1, "insert_key", ("orphan",), deadline)))
        time.sleep(0.2)  # the frame and the end of its connection wait in the socket
        gate.touch()
        assert _reap(holder, 30) == 0
        assert _write(socket_path, (insert_key, "after")) == ["after"]
        with contextlib.closing(sqlite3.connect(database)) as conn:
            keys = {k for (k,) in conn.execute("SELECT k FROM test_keys")}
    assert keys == {"held", "after"}


def test_a_connection_from_another_user_is_refused_even_if_the_directory_admits_it(
    tmp_path: Path,
) -> None:
    # The 0700 directory is the first guard; a pickle from another user must meet a second
    # one (the peer's credentials) should the directory's mode ever be wrong.
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    database = tmp_path / "atopos.db"
    with writer_process(database) as socket_path:
        _write(socket_path, (make_keys_table,))
        socket_path.parent.chmod(0o777)
        socket_path.chmod(0o777)

        def as_nobody() -> bool:
            os.setgid(65534)
            os.setuid(65534)
            with contextlib.closing(_connect(socket_path)) as sock:
                try:
                    sock.sendall(
                        encode_frame((1, "insert_key", ("stranger",), time.monotonic() + 9))
                    )
                    return sock.recv(1) == b""  # closed unanswered
                except (ConnectionResetError, BrokenPipeError):
                    return True  # closed with the frame unread (or before it was all sent)

        assert _reap(_in_child(as_nobody), 20) == 0
        assert _write(socket_path, (insert_key, "owner")) == ["owner"]
        with contextlib.closing(sqlite3.connect(database)) as conn:
            keys = {k for (k,) in conn.execute("SELECT k FROM test_keys")}
    assert keys == {"owner"}


def test_a_worker_that_reads_no_replies_is_not_read_from_until_it_does(tmp_path: Path) -> None:
    # Replies to a worker that stopped reading (SIGSTOP, a blocked loop) wait in the writer
    # process's memory: past a cap it stops taking that worker's writes instead of piling
    # up their replies, serves the other workers, and answers every write once it reads.
    database = tmp_path / "atopos.db"
    frames = 48
    key = "k" * (1024 * 1024)
    with (
        writer_process(database) as socket_path,
        contextlib.closing(_connect(socket_path)) as deaf,
    ):
        _write(socket_path, (make_keys_table,))
        deadline = time.monotonic() + 60
        stream = b"".join(encode_frame((n, "insert_key", (key,), deadline)) for n in range(frames))
        deaf.settimeout(None)
        sender = threading.Thread(target=deaf.sendall, args=(stream,), daemon=True)
        sender.start()
        sender.join(timeout=8)
        assert sender.is_alive()  # the writer process stopped reading from it
        assert _write(socket_path, (insert_key, "other")) == ["other"]
        reader = FrameReader()
        replies: list[Any] = []
        deaf.settimeout(30)
        while len(replies) < frames:
            data = deaf.recv(1024 * 1024)
            assert data, "the writer process closed the connection"
            replies += reader.feed(data)
        sender.join(timeout=30)
    assert [(n, ok) for n, ok, _value in replies] == [(n, True) for n in range(frames)]


def test_a_batch_is_answered_before_the_next_batch_of_its_round_commits(tmp_path: Path) -> None:
    # A round that took more writes than one batch holds commits them batch after batch;
    # the first batch's callers must not wait for the later ones (their wait is bounded,
    # and a committed write answered late reads as lost).
    database = tmp_path / "atopos.db"
    entered, gate = tmp_path / "entered", tmp_path / "gate"
    entered_later, gate_later = tmp_path / "entered-later", tmp_path / "gate-later"
    with writer_process(database) as socket_path:
        _write(socket_path, (make_keys_table,))
        holder = _in_child(
            lambda: _write(socket_path, (hold_the_writer, str(entered), str(gate))) == [None]
        )
        _wait_for_file(entered)
        with contextlib.closing(_connect(socket_path)) as sock:
            deadline = time.monotonic() + 30
            frames = [encode_frame((n, "insert_key", (f"k{n}",), deadline)) for n in range(512)]
            held = (512, "hold_the_writer", (str(entered_later), str(gate_later)), deadline)
            sock.sendall(b"".join(frames) + encode_frame(held))
            time.sleep(0.3)  # all of it waits in the socket for the next round
            gate.touch()
            _wait_for_file(entered_later)  # the round's second batch is being committed
            sock.settimeout(5)
            try:
                data = sock.recv(65536)
                assert FrameReader().feed(data[: 4 + struct.unpack(">I", data[:4])[0]]) == [
                    (0, True, "k0")
                ]
            finally:
                gate_later.touch()
        assert _reap(holder, 30) == 0
