"""Sliding-window counters in anonymous shared memory, for the worker processes of one node.

The supervisor (server/workers.py) makes the table before it forks the workers: one
`mmap(-1, ...)`, MAP_SHARED | MAP_ANONYMOUS, that no file backs (and left out of core
files), so nothing of it reaches a disk and it is gone when the node stops, like the
counters of a single process. Every
worker inherits the same pages, and so counts every client against the same budgets.

The size is fixed: `slots` records of 64 bytes (4 MiB by default), in buckets of 8. A
counter's key is turned into a 16-byte fingerprint (BLAKE2b keyed with a random key drawn
before the fork), which also picks its bucket; a counter never leaves its bucket. When a new
counter finds its bucket full, it takes the place of the bucket's least spent counter
(expired ones first, then the one with the smallest share of its limit used), so a client
rotating addresses churns the bucket's idle counters, and one that has spent its budget is
the last to be forgotten. The table never grows.

One cross-process lock (a POSIX semaphore from `multiprocessing`) guards the table, held
only while one record is read and rewritten (a few microseconds). A worker killed while it
holds the lock cannot release it, and Python has no robust mutex: the holder writes its pid
and a hold number into the table's header, and a waiter that sees the holder dead, or the
same hold for longer than `STUCK_AFTER` seconds, takes the lock over (docs/operations.md,
"Worker processes"). Each process uses the table from one thread (its event loop).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import mmap
import multiprocessing
import os
import struct
from collections.abc import Iterator

from atopos.clock import Clock
from atopos.randomness import RandomBytes

__all__ = ["DEFAULT_SLOTS", "STUCK_AFTER", "SharedCounterTable", "TableBusy", "WindowCounts"]

DEFAULT_SLOTS = 65_536
BUCKET_SLOTS = 8
# A hold longer than this is a holder that died (or stopped) with the lock: taken over.
STUCK_AFTER = 1.0
# A waiter looks at the holder this often, and gives up (503) after this long.
_WAIT_STEP = 0.05
_GIVE_UP_AFTER = 3.0

_HEADER_BYTES = 64
# Slot: fingerprint, window length (s), window number, previous and current window's counts,
# limit. An empty slot has window length 0.
_SLOT = struct.Struct("<16sqqqqq")
_SLOT_BYTES = 64
_FINGERPRINT_KEY_BYTES = 32
# A slot's integers are 64-bit: a larger limit counts as this one (the counts, which never
# pass the limit, then fit too), as good as unlimited.
_LARGEST_LIMIT = 2**63 - 1

WindowCounts = tuple[int, float, int, float]
"""What `limits` asks of a sliding window: the previous window's count and the seconds it
still weighs, the current window's count and the seconds until it ends as a previous one."""


class TableBusy(Exception):
    """The lock stayed held, by a live process, for longer than a request may wait."""


class SharedCounterTable:
    def __init__(
        self, clock: Clock, random_bytes: RandomBytes, *, slots: int = DEFAULT_SLOTS
    ) -> None:
        """Make the table; call before forking the processes that share it."""
        if slots < BUCKET_SLOTS or slots % BUCKET_SLOTS:
            raise ValueError(f"slots must be a multiple of {BUCKET_SLOTS}")
        self._clock = clock
        self._buckets = slots // BUCKET_SLOTS
        self._memory = mmap.mmap(-1, _HEADER_BYTES + slots * _SLOT_BYTES)
        # The header as two integers: the holder's pid (0: none) and the number of its hold.
        self._header = memoryview(self._memory)[:16].cast("q")
        # Nor into a core file: the slots are keyed by (fingerprints of) client identifiers.
        if hasattr(mmap, "MADV_DONTDUMP"):
            self._memory.madvise(mmap.MADV_DONTDUMP)
        self._lock = multiprocessing.get_context("fork").Lock()
        self._fingerprint_key = random_bytes(_FINGERPRINT_KEY_BYTES)
        # The hold number this process wrote when it last took the lock.
        self._my_hold = 0

    @property
    def size_bytes(self) -> int:
        return len(self._memory)

    def acquire(self, key: str, expiry: int, limit: int, amount: int) -> bool:
        """Add `amount` to the key's current window unless the weighted count would then
        exceed `limit` (then nothing is added): `limits`' sliding-window counter, but the
        check and the addition are one step under the lock, so concurrent hits are exact."""
        if amount > limit:
            return False
        limit = min(limit, _LARGEST_LIMIT)
        fingerprint = self._fingerprint(key)
        self._take_lock()  # (not `_held()`: this runs for every request, and is 1 µs less)
        try:
            now = self._clock.now()
            window = int(now // expiry)
            index, previous, current = self._find(fingerprint, expiry, window, now)
            weighted = previous * _previous_weight(now, expiry) / expiry + current
            if math.floor(weighted) + amount > limit:
                return False
            self._write(index, fingerprint, expiry, window, previous, current + amount, limit)
            return True
        finally:
            self._release_lock()

    def window(self, key: str, expiry: int) -> WindowCounts:
        """The key's counts, as `limits`' storages report them (zeros for an unknown key)."""
        fingerprint = self._fingerprint(key)
        self._take_lock()
        try:
            now = self._clock.now()
            previous, current = self._counts(fingerprint, expiry, int(now // expiry))
        finally:
            self._release_lock()
        previous_ttl = _previous_weight(now, expiry) if previous else 0.0
        current_ttl = (1 - (now / expiry) % 1) * expiry + expiry
        return previous, previous_ttl, current, current_ttl

    def clear(self, key: str) -> None:
        fingerprint = self._fingerprint(key)
        with self._held():
            for index in self._bucket(fingerprint):
                if self._read(index)[0] == fingerprint:
                    self._write(index, bytes(16), 0, 0, 0, 0, 0)

    def reset(self) -> None:
        with self._held():
            self._memory[_HEADER_BYTES:] = bytes(len(self._memory) - _HEADER_BYTES)

    def _fingerprint(self, key: str) -> bytes:
        return hashlib.blake2b(
            key.encode("utf-8"), digest_size=16, key=self._fingerprint_key
        ).digest()

    def _bucket(self, fingerprint: bytes) -> range:
        first = int.from_bytes(fingerprint[:8], "little") % self._buckets * BUCKET_SLOTS
        return range(first, first + BUCKET_SLOTS)

    def _counts(self, fingerprint: bytes, expiry: int, window: int) -> tuple[int, int]:
        for index in self._bucket(fingerprint):
            found, slot_expiry, slot_window, previous, current, _ = self._read(index)
            if found == fingerprint and slot_expiry == expiry:
                return _rolled(slot_window, previous, current, window)
        return 0, 0

    def _find(
        self, fingerprint: bytes, expiry: int, window: int, now: float
    ) -> tuple[int, int, int]:
        """The key's slot and its counts rolled to `window`; or, for a new key, the slot it
        takes (the bucket's least spent one) with zero counts."""
        victim, victim_score = -1, math.inf
        for index in self._bucket(fingerprint):
            found, slot_expiry, slot_window, previous, current, limit = self._read(index)
            if found == fingerprint and slot_expiry == expiry:
                return (index, *_rolled(slot_window, previous, current, window))
            score = _spent_share(slot_expiry, slot_window, previous, current, limit, now)
            if score < victim_score:
                victim, victim_score = index, score
        return victim, 0, 0

    def _read(self, index: int) -> tuple[bytes, int, int, int, int, int]:
        return _SLOT.unpack_from(self._memory, _HEADER_BYTES + index * _SLOT_BYTES)

    def _write(
        self,
        index: int,
        fingerprint: bytes,
        expiry: int,
        window: int,
        previous: int,
        current: int,
        limit: int,
    ) -> None:
        _SLOT.pack_into(
            self._memory,
            _HEADER_BYTES + index * _SLOT_BYTES,
            fingerprint,
            expiry,
            window,
            previous,
            current,
            limit,
        )

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        self._take_lock()
        try:
            yield
        finally:
            self._release_lock()

    def _take_lock(self) -> None:
        if not self._lock.acquire(False):
            self._wait_for_lock()
        self._note_holder()

    def _wait_for_lock(self) -> None:
        """Wait for the lock in short steps; between them, take it over from a holder that
        died, or from one this waiter has seen hold it for longer than any update takes."""
        started = self._clock.monotonic()
        header = self._header
        seen, seen_since = (header[0], header[1]), started
        while not self._lock.acquire(True, _WAIT_STEP):
            now = self._clock.monotonic()
            holder = (header[0], header[1])
            if holder != seen:
                seen, seen_since = holder, now
            pid = holder[0]
            if (pid and not _is_alive(pid)) or now - seen_since > STUCK_AFTER:
                # The semaphore stays taken: this process is its holder from now on.
                return
            if now - started > _GIVE_UP_AFTER:
                raise TableBusy("the rate-limit table's lock stayed held")

    def _note_holder(self) -> None:
        header = self._header
        self._my_hold = header[1] + 1
        header[0], header[1] = _this_process.pid, self._my_hold

    def _release_lock(self) -> None:
        header = self._header
        if header[0] != _this_process.pid or header[1] != self._my_hold:
            return  # taken over while this process held it: the new holder releases it
        header[0] = 0
        with contextlib.suppress(ValueError):  # released by a take-over that raced this one
            self._lock.release()


class _ThisProcess:
    """This process's pid, kept up to date across forks: os.getpid() is a system call, and
    each hit would make two."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.pid = os.getpid()


_this_process = _ThisProcess()


def _rolled(slot_window: int, previous: int, current: int, window: int) -> tuple[int, int]:
    """A slot's (previous, current) counts as seen from `window`."""
    if slot_window == window:
        return previous, current
    if slot_window == window - 1:
        return current, 0
    return 0, 0


def _previous_weight(now: float, expiry: int) -> float:
    """Seconds of the previous window that still count (as `limits` weighs them)."""
    return (1 - ((now - expiry) / expiry) % 1) * expiry


def _spent_share(
    expiry: int, slot_window: int, previous: int, current: int, limit: int, now: float
) -> float:
    """How much of its limit a slot's counter has spent now: -1 for an empty or expired slot
    (taken first), then from 0 up; a new key takes the bucket's smallest."""
    if not expiry:
        return -1.0
    window = int(now // expiry)
    previous, current = _rolled(slot_window, previous, current, window)
    if not (previous or current):
        return -1.0
    weighted = previous * _previous_weight(now, expiry) / expiry + current
    return weighted / max(1, limit)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
