"""The workers' shared counter table (server/shared_counters.py) in one process: the
sliding-window answers RateLimits relies on, a fixed size, and which counter a full bucket
gives up."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from tests.servers import ManualClock

from atopos.clock import SystemClock
from atopos.errors import RateLimited
from atopos.randomness import system_random_bytes
from atopos.server.config import ServerConfig, rate_limits
from atopos.server.identity import ClientId
from atopos.server.node import build_node
from atopos.server.ratelimit import RateLimits, _key_for
from atopos.server.shared_counter_storage import SharedCounterStorage
from atopos.server.shared_counters import BUCKET_SLOTS, DEFAULT_SLOTS, SharedCounterTable

_MINUTE = 60


def _table(clock: ManualClock, slots: int = DEFAULT_SLOTS) -> SharedCounterTable:
    return SharedCounterTable(clock, lambda size: bytes(range(size)), slots=slots)


def _window_start() -> ManualClock:
    return ManualClock(1_800_000_000.0)  # a multiple of 60: a minute window starts here


def test_a_limit_admits_exactly_its_count_then_refuses() -> None:
    table = _table(_window_start())
    answers = [table.acquire("k", _MINUTE, 5, 1) for _ in range(8)]
    assert answers == [True] * 5 + [False] * 3
    assert table.window("k", _MINUTE)[2] == 5  # refused hits add nothing


def test_a_cost_larger_than_what_is_left_is_refused_whole() -> None:
    table = _table(_window_start())
    assert table.acquire("bytes", 3600, 100, 70)
    assert not table.acquire("bytes", 3600, 100, 40)
    assert table.acquire("bytes", 3600, 100, 30)
    assert table.window("bytes", 3600)[2] == 100


def test_the_previous_window_weighs_as_in_limits() -> None:
    clock = _window_start()
    table = _table(clock)
    for _ in range(10):
        assert table.acquire("k", _MINUTE, 10, 1)
    clock.advance(_MINUTE + 15)  # a quarter into the next window: 3/4 of 10 still count
    previous, previous_ttl, current, current_ttl = table.window("k", _MINUTE)
    assert (previous, current) == (10, 0)
    assert previous_ttl == pytest.approx(45)
    assert current_ttl == pytest.approx(105)
    # floor(7.5 + current) + 1 <= 10 holds for current = 0, 1 and 2.
    assert [table.acquire("k", _MINUTE, 10, 1) for _ in range(4)] == [True, True, True, False]
    clock.advance(2 * _MINUTE)  # both windows over: nothing counts
    assert table.window("k", _MINUTE)[:3] == (0, 0.0, 0)


def test_counters_are_per_key_and_per_window_length() -> None:
    table = _table(_window_start())
    assert table.acquire("a", _MINUTE, 1, 1)
    assert not table.acquire("a", _MINUTE, 1, 1)
    assert table.acquire("b", _MINUTE, 1, 1)
    assert table.acquire("a", 3600, 1, 1)


def test_rate_limits_on_the_table_answer_429_with_a_retry_after() -> None:
    clock = _window_start()
    clock.advance(20)
    limits = RateLimits({"create": 3}, SharedCounterStorage(_table(clock)), clock=clock)

    async def scenario() -> int:
        for _ in range(3):
            await limits.hit("create", "client")
        with pytest.raises(RateLimited) as refused:
            await limits.hit("create", "client")
        return refused.value.retry_after

    # `limits` reads its own wall clock for the reset time: only bounds hold here.
    assert 1 <= asyncio.run(scenario()) <= 2 * _MINUTE


def test_limits_sliding_window_strategy_reads_the_table() -> None:
    clock = _window_start()
    storage = SharedCounterStorage(_table(clock))
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = RateLimitItemPerMinute(2)

    async def scenario() -> list[bool]:
        return [await limiter.hit(item, "route", "client") for _ in range(3)]

    assert asyncio.run(scenario()) == [True, True, False]


def test_the_table_is_fixed_size_and_anonymous_shared_memory() -> None:
    table = _table(_window_start())
    assert table.size_bytes == 64 + DEFAULT_SLOTS * 64  # 4 MiB and a header
    for index in range(3 * DEFAULT_SLOTS):  # an attacker rotating through 3x the slots
        table.acquire(f"address-{index}", _MINUTE, 60, 1)
    assert table.size_bytes == 64 + DEFAULT_SLOTS * 64
    # The mapping is shared, backed by no file on disk (/dev/zero is how Linux names an
    # anonymous shared mapping) and left out of core files (VmFlags "dd").
    rounded = -(-table.size_bytes // 4096) * 4096
    mappings = [
        (name, flags.split())
        for start, end, mode, name, flags in re.findall(
            r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+[ \t]*(.*?)$.*?^VmFlags:(.*?)$",
            Path("/proc/self/smaps").read_text(),
            re.MULTILINE | re.DOTALL,
        )
        if mode[3] == "s" and int(end, 16) - int(start, 16) == rounded
    ]
    assert mappings
    assert all(name.startswith("/dev/zero") and "dd" in flags for name, flags in mappings)


def test_a_full_bucket_gives_up_its_least_spent_counter_first() -> None:
    clock = _window_start()
    table = _table(clock, slots=BUCKET_SLOTS)  # one bucket: every key competes
    for _ in range(60):
        assert table.acquire("spent", _MINUTE, 60, 1)
    for index in range(BUCKET_SLOTS - 1):
        assert table.acquire(f"idle-{index}", _MINUTE, 60, 1)
    for index in range(1_000):  # rotating addresses churn the idle counters only
        assert table.acquire(f"rotating-{index}", _MINUTE, 60, 1)
    assert not table.acquire("spent", _MINUTE, 60, 1)
    assert table.window("spent", _MINUTE)[2] == 60
    assert table.window("idle-0", _MINUTE)[2] == 0  # forgotten


def test_expired_counters_are_reused_before_live_ones() -> None:
    clock = _window_start()
    table = _table(clock, slots=BUCKET_SLOTS)
    assert table.acquire("old", _MINUTE, 60, 1)
    clock.advance(2 * _MINUTE)
    for index in range(BUCKET_SLOTS - 1):
        assert table.acquire(f"live-{index}", _MINUTE, 60, 2)
    assert table.acquire("new", _MINUTE, 60, 1)  # takes the expired slot
    assert all(table.window(f"live-{index}", _MINUTE)[2] == 2 for index in range(7))


def test_clear_and_reset_forget_counters() -> None:
    table = _table(_window_start())
    table.acquire("a", _MINUTE, 5, 5)
    table.acquire("b", _MINUTE, 5, 5)
    table.clear("a")
    assert table.window("a", _MINUTE)[2] == 0
    assert table.window("b", _MINUTE)[2] == 5
    table.reset()
    assert table.window("b", _MINUTE)[2] == 0


def test_the_slot_count_must_fill_whole_buckets() -> None:
    with pytest.raises(ValueError, match="multiple"):
        _table(_window_start(), slots=BUCKET_SLOTS + 1)


def test_workers_share_counters_unless_a_rate_limit_redis_is_set() -> None:
    assert ServerConfig(workers=2).shares_counters_between_workers()
    assert ServerConfig(
        workers=2, rate_limit_storage_url="memory://"
    ).shares_counters_between_workers()
    assert not ServerConfig(workers=1).shares_counters_between_workers()
    # Redis wins when configured: for the counters, or as the storage they default to.
    redis = "redis://127.0.0.1:6380/0"
    assert not ServerConfig(
        workers=2, rate_limit_storage_url=redis
    ).shares_counters_between_workers()
    assert not ServerConfig(workers=2, storage_url=redis).shares_counters_between_workers()


def test_two_nodes_on_one_table_count_one_budget() -> None:
    clock = _window_start()
    table = _table(clock)
    config = ServerConfig(workers=2, **rate_limits(4))
    nodes = [
        build_node(config, clock, system_random_bytes, shared_counters=table) for _ in range(2)
    ]

    async def scenario() -> list[bool]:
        answers = []
        for index in range(6):
            try:
                await nodes[index % 2].limits.hit("create", "client")
            except RateLimited:
                answers.append(False)
            else:
                answers.append(True)
        return answers

    assert asyncio.run(scenario()) == [True] * 4 + [False] * 2


@pytest.mark.parametrize("store", ["memory", "shared"])
def test_rate_limits_answer_alike_on_both_stores(store: str) -> None:
    """The contract RateLimits relies on: the same answers from `limits`' in-process storage
    and from the shared table (both on the system clock, which `limits` reads itself)."""
    clock = SystemClock()
    storage = MemoryStorage() if store == "memory" else SharedCounterStorage(_table(clock))
    limits = RateLimits({"create": 5}, storage, clock=clock, per_hour={"upload": 150})
    narrow = ClientId("a", ("net56", "net48"))
    neighbour = ClientId("b", ("net56", "net48"))
    waits: list[int] = []

    async def scenario() -> tuple[list[bool], list[bool], int, list[bool]]:
        async def admitted(call: Callable[[], Awaitable[None]]) -> bool:
            try:
                await call()
            except RateLimited as refused:
                waits.append(refused.retry_after)
                return False
            return True

        own = [await admitted(lambda: limits.hit("create", narrow)) for _ in range(6)]
        # The /56 has 4 times the budget: a neighbour /64 still gets its own 5.
        other = [await admitted(lambda: limits.hit("create", neighbour)) for _ in range(6)]
        for _ in range(4):
            await limits.record_failure(narrow)
        bits = await limits.extra_bits(narrow)
        upload = [
            await admitted(lambda amount=amount: limits.spend("upload", narrow, amount))
            for amount in (100, 60, 50)
        ]
        return own, other, bits, upload

    own, other, bits, upload = asyncio.run(scenario())
    assert own == [True] * 5 + [False]
    assert other == [True] * 5 + [False]
    assert bits == 3  # 4 failures: bit_length 3
    assert upload == [True, False, True]
    assert len(waits) == 3
    assert all(1 <= wait <= 3600 for wait in waits)


def test_a_flood_of_new_clients_does_not_forget_failures_that_raise_the_price() -> None:
    """Failure counts have no route limit, but a count that adds bits of proof of work must
    outrank a client seen once: else a flood of fresh identifiers (one /48 has 65,536, and a
    request refused at the /48 still counts its /64) resets the flooder's own extra bits."""
    clock = SystemClock()  # `limits` reads the system clock itself
    table = SharedCounterTable(clock, system_random_bytes, slots=BUCKET_SLOTS)  # one bucket
    limits = RateLimits({"create": 60}, SharedCounterStorage(table), clock=clock)

    async def scenario() -> tuple[int, int]:
        for _ in range(20):  # 5 bits; still 5 if a 10-minute window ends meanwhile
            await limits.record_failure("attacker")
        before = await limits.extra_bits("attacker")
        for index in range(1_000):
            await limits.hit("create", f"fresh-{index}")
        return before, await limits.extra_bits("attacker")

    assert asyncio.run(scenario()) == (5, 5)


def test_a_limit_past_64_bits_is_counted_not_a_500() -> None:
    """An operator's huge limit (the /48's budget is 16 times it) fits `limits`' in-process
    storage; the table's 64-bit slots must take it too, not raise struct.error (a 500)."""
    table = _table(_window_start())
    assert table.acquire("k", _MINUTE, 2**70, 1)
    assert table.acquire("k", _MINUTE, 2**70, 2**40)
    assert table.window("k", _MINUTE)[2] == 2**40 + 1
    limits = RateLimits({"create": 10**18}, SharedCounterStorage(table), clock=SystemClock())
    asyncio.run(limits.hit("create", ClientId("a", ("a/56", "a/48"))))


def test_the_tables_lock_leaves_no_name_in_dev_shm() -> None:
    """The semaphore is a file in /dev/shm while it is made: no name may stay linked to it
    (a name left there outlives a killed node)."""
    table = _table(_window_start())
    assert table.acquire("k", _MINUTE, 5, 1)
    mapped = {
        int(line.split()[4])
        for line in Path("/proc/self/maps").read_text().splitlines()
        if "/dev/shm/sem." in line
    }
    assert mapped  # the lock is a file of /dev/shm, mapped here ...
    named = set()
    for entry in Path("/dev/shm").iterdir():
        with contextlib.suppress(FileNotFoundError):  # another process's, removed meanwhile
            named.add(entry.stat().st_ino)
    assert not mapped & named  # ... that no name in /dev/shm reaches


@pytest.mark.parametrize(
    "item",
    [RateLimitItemPerMinute(5), RateLimitItemPerMinute(2**70, 10), RateLimitItemPerHour(150)],
)
def test_the_direct_hit_counts_under_the_key_limits_reads(item: RateLimitItem) -> None:
    """RateLimits hits the table without `limits`, whose reads (a refusal's wait, the failure
    bits) must still find the counter: the key is the one `limits` builds."""
    assert _key_for(item, "create", "client/56") == item.key_for("create", "client/56")
