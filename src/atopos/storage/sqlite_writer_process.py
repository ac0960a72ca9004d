"""The node's one SQLite writer process (`atopos serve --workers N`): it owns the only write
connection and runs the group commit for every worker.

Single-threaded and synchronous: it waits (selectors) for frames from all workers' connections
on a Unix stream socket (storage/sqlite_writer_frames.py), takes every frame that is ready
from every worker, commits them as one batch (storage/sqlite_batches.py: one transaction,
`synchronous=FULL`, the writers' flock per batch so any other writer of the file is still
excluded, a checkpoint after burns) and only then sends each reply. A reply is therefore sent
only after COMMIT returned. It runs only operations registered by name
(storage/sqlite_write_operations.py); an unknown name gets an error reply. A write whose
worker stopped waiting (its deadline passed) before its batch began is not run: it gets
WritersBusy; one whose connection ended before its batch began (its worker was killed, or
gave up on the connection and answered 503) is not run at all. A frame over the cap, or one
that does not decode, ends that connection only; a connection from a process of another user
(SO_PEERCRED) is closed before anything of it is read.

With `parent_gone` (the read end of a pipe whose write end only the supervisor holds) it
stops after the batch in hand when that pipe reaches its end: the supervisor closed it once
every worker had finished, or died. It then ignores SIGTERM and SIGINT: systemd stops a unit
by signalling every process of it at once, and the workers still finishing their requests
need it. Without `parent_gone`, SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import selectors
import signal
import socket
import struct
from collections.abc import Callable
from types import FrameType
from typing import Any

from atopos.clock import Clock
from atopos.errors import Unavailable
from atopos.storage.port import UNAVAILABLE_MESSAGE
from atopos.storage.sqlite_batches import (
    BUSY_MESSAGE,
    MAX_BATCH,
    BatchCommitter,
    Outcome,
    WritersBusy,
)
from atopos.storage.sqlite_write_operations import operation_named, with_args
from atopos.storage.sqlite_writer_frames import (
    FrameReader,
    FrameTooLarge,
    UnknownWriteOperation,
    encode_frame,
    error_reply,
)

__all__ = ["serve_writes"]

_log = logging.getLogger("atopos.storage")
# Bytes read from one connection per round: a busy worker cannot starve the others.
_READ_PER_ROUND = 8 * 1024 * 1024
_RECV_BYTES = 1024 * 1024
# Bytes of replies waiting for one worker to read them, past which its frames are no longer
# read until it has read some: a worker that stopped reading (SIGSTOP) cannot make this
# process hold its replies without end.
_MAX_OUTBOX = 16 * 1024 * 1024
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Peer:
    """One worker's connection: its frames in, its replies out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = FrameReader()
        self.outbox = bytearray()
        self.is_closed = False
        self.events = selectors.EVENT_READ  # what the selector watches it for


# A write taken from a frame: (its connection, its request id, operation, lock deadline).
_Write = tuple[_Peer, int, Callable[[Any], Any], float]


def serve_writes(
    listener: socket.socket,
    committer: BatchCommitter,
    clock: Clock,
    *,
    max_connections: int,
    parent_gone: int | None = None,
) -> None:
    """Accept workers on `listener` (bound and listening) and commit their writes until told
    to stop; a connection past `max_connections` open ones is closed at once. `committer` is
    opened here and closed at the end."""
    _WriterLoop(listener, committer, clock, parent_gone, max_connections).run()


class _WriterLoop:
    def __init__(
        self,
        listener: socket.socket,
        committer: BatchCommitter,
        clock: Clock,
        parent_gone: int | None,
        max_connections: int,
    ) -> None:
        self._listener = listener
        self._max_connections = max_connections
        self._committer = committer
        self._clock = clock
        self._parent_gone = parent_gone
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, _Peer] = {}
        self._is_stopping = False

    def run(self) -> None:
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        on_stop_signal = signal.SIG_IGN if self._parent_gone is not None else self._stop
        previous = {signum: signal.signal(signum, on_stop_signal) for signum in _STOP_SIGNALS}
        self._committer.open()
        try:
            self._listener.setblocking(False)
            self._selector.register(self._listener, selectors.EVENT_READ, "accept")
            self._selector.register(wake_read, selectors.EVENT_READ, "wake")
            if self._parent_gone is not None:
                self._selector.register(self._parent_gone, selectors.EVENT_READ, "parent")
            while not self._is_stopping:
                self._round(wake_read)
        finally:
            for peer in list(self._peers.values()):
                self._close(peer)
            self._selector.close()
            self._committer.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._is_stopping = True

    def _round(self, wake_read: int) -> None:
        events = self._selector.select(self._committer.checkpoint_wait())
        if not events:
            self._committer.checkpoint()
            return
        writes: list[_Write] = []
        for key, mask in events:
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 512)
            elif key.data == "parent":
                if not os.read(key.fd, 512):
                    self._is_stopping = True
            else:
                peer: _Peer = key.data
                if mask & selectors.EVENT_READ:
                    writes.extend(self._take_frames(peer))
                if mask & selectors.EVENT_WRITE:
                    self._flush(peer)
        for start in range(0, len(writes), MAX_BATCH):
            self._commit(writes[start : start + MAX_BATCH])
            # Each batch's callers are answered as soon as it committed, not after the
            # round's later batches (nor after a reconnect that its failure called for).
            self._flush_all()
            self._committer.reopen_if_broken()
        if writes:
            self._committer.checkpoint_if_due()
        self._flush_all()

    def _flush_all(self) -> None:
        for peer in list(self._peers.values()):
            if peer.outbox:
                self._flush(peer)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the worker retries
                _log.error("writer process accept failed", extra={"error": type(exc).__name__})
                return
            if not _is_this_user(sock):
                # The socket's 0700 directory admits this user only; should its mode ever be
                # wrong, a pickle from anyone else must still not be loaded.
                _log.warning("writer process: a connection from another user; closed")
                sock.close()
                continue
            if len(self._peers) >= self._max_connections:
                # Each worker keeps one connection; more means a bug or a flood, and every
                # connection costs this process a buffer and a place in each round.
                _log.warning("writer process: connection refused, all are in use")
                sock.close()
                continue
            sock.setblocking(False)
            peer = _Peer(sock)
            self._peers[sock] = peer
            self._selector.register(sock, selectors.EVENT_READ, peer)

    def _take_frames(self, peer: _Peer) -> list[_Write]:
        """Every complete frame the peer has sent so far (up to a round's bytes), as writes;
        refusals of unknown operations go straight to its outbox."""
        writes: list[_Write] = []
        read = 0
        while read < _READ_PER_ROUND and not peer.is_closed:
            try:
                data = peer.sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self._close(peer)
                break
            read += len(data)
            try:
                payloads = peer.frames.feed(data)
            except FrameTooLarge:
                _log.warning("writer process: a frame over the cap; connection closed")
                self._close(peer)
                break
            except Exception:
                _log.warning("writer process: a frame that does not decode; connection closed")
                self._close(peer)
                break
            for payload in payloads:
                if peer.is_closed:
                    break
                write = self._write_of(peer, payload)
                if write is not None:
                    writes.append(write)
            # Read on until the socket is empty: an end of connection already waiting behind
            # the frames is then seen before their batch (see _commit).
        return writes

    def _write_of(self, peer: _Peer, payload: Any) -> _Write | None:
        try:
            request_id, name, args, deadline = payload
            operation = operation_named(name) if isinstance(name, str) else None
            args, deadline = tuple(args), float(deadline)
            if not math.isfinite(deadline):
                raise ValueError("a deadline that never comes")  # an endless lock wait
        except (TypeError, ValueError):
            # Left to escape, it would end the loop, and every worker's connection with it.
            _log.warning("writer process: a malformed request; connection closed")
            self._close(peer)
            return None
        if operation is None:
            self._reply(peer, request_id, (None, UnknownWriteOperation("unknown write operation")))
            return None
        return peer, request_id, with_args(operation, args), deadline

    def _commit(self, writes: list[_Write]) -> None:
        now = self._clock.monotonic()
        # A write whose worker stopped waiting is not begun: it would be a change nobody hears of.
        live = []
        for peer, request_id, operation, deadline in writes:
            if peer.is_closed:
                continue  # its worker is gone or answered 503 already: nobody would hear
            if deadline <= now:
                self._reply(peer, request_id, (None, WritersBusy(BUSY_MESSAGE)))
            else:
                live.append((peer, request_id, operation, deadline))
        if not live:
            return
        # The batch waits for the writers' lock until the deadline of its first write: the
        # earliest one, so no write is begun after its worker stopped waiting. Frames of
        # several workers arrive in no such order (they may have queued behind a long wait).
        live.sort(key=lambda write: write[3])
        outcomes = self._committer.commit([(op, deadline) for _p, _r, op, deadline in live])
        for (peer, request_id, _op, _deadline), outcome in zip(live, outcomes, strict=True):
            self._reply(peer, request_id, outcome)

    def _reply(self, peer: _Peer, request_id: Any, outcome: Outcome) -> None:
        if peer.is_closed:
            return  # that worker's connection broke: it already answered 503
        result, error = outcome
        try:
            if error is None:
                frame = encode_frame((request_id, True, result))
            else:
                frame = encode_frame((request_id, False, error_reply(error)))
        except Exception as exc:
            _log.error(
                "writer process: a reply does not encode", extra={"error": type(exc).__name__}
            )
            # Committed, but its result cannot be told: the worker answers 503.
            frame = encode_frame((request_id, False, error_reply(Unavailable(UNAVAILABLE_MESSAGE))))
        peer.outbox += frame

    def _flush(self, peer: _Peer) -> None:
        if peer.is_closed:
            return
        try:
            sent = peer.sock.send(peer.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(peer)
            return
        del peer.outbox[:sent]
        # Watched for writing only while replies wait for room in the socket's buffer, and
        # for reading only while they are fewer than the cap (never neither: over the cap,
        # replies wait).
        events = selectors.EVENT_WRITE if peer.outbox else 0
        if len(peer.outbox) < _MAX_OUTBOX:
            events |= selectors.EVENT_READ
        if events != peer.events:
            peer.events = events
            self._selector.modify(peer.sock, events, peer)

    def _close(self, peer: _Peer) -> None:
        if peer.is_closed:
            return
        peer.is_closed = True
        self._peers.pop(peer.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(peer.sock)
        peer.sock.close()


_PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _is_this_user(sock: socket.socket) -> bool:
    """Whether the process at the other end of `sock` runs as this process's user (the
    kernel's SO_PEERCRED, taken when it connected)."""
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size)
    except OSError:
        return False
    _pid, uid, _gid = _PEER_CREDENTIALS.unpack(data)
    return bool(uid == os.geteuid())
