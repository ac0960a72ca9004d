"""Per-identifier rate limits and failure counts on the `limits` library.

The storage is `limits`' in-memory one for a single process, the table in shared memory
for the worker processes of one node (server/shared_counter_storage.py), or its Redis
storage when nodes share a Redis, so limits hold across nodes (`rate_limit_storage`). A
storage that cannot be reached makes the request fail with Unavailable (503): limits fail
closed. On Redis, a `PersistenceCheck` (storage/ephemeral_redis.py) must pass before
counters are written: their keys are client identifiers, which must not reach a disk. The
Redis clients are built by storage/redis_clients.py.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import ConfigurationError, StorageError

from atopos.clock import Clock, SystemClock
from atopos.errors import InvalidInput, RateLimited, Unavailable
from atopos.server.identity import ClientId
from atopos.server.shared_counter_storage import SharedCounterStorage
from atopos.server.shared_counters import SharedCounterTable, TableBusy
from atopos.storage.ephemeral_redis import UNAVAILABLE_MESSAGE, PersistenceCheck
from atopos.storage.outage_log import OutageLog
from atopos.storage.urls import REDIS_CLUSTER_SCHEMES, REDIS_SCHEMES

__all__ = ["KEY_PREFIX", "UPLOAD_BUDGET", "RateLimits", "rate_limit_storage"]

MAX_EXTRA_BITS = 8
# IPv6 clients are also counted by their /56 and /48 (server/identity.py), each step with a
# budget 2**2 times larger, and failures there counting 2 bits less.
_WIDER_NETWORKS = 2
_WIDER_STEP_BITS = 2
# Failures (bad proof of work, bad or replayed ticket) are counted over 10 minutes; each
# doubling of the count adds one bit of proof-of-work difficulty, up to MAX_EXTRA_BITS. Per
# network step, the count stops where it gives those bits: a limit that also makes the
# shared table (server/shared_counters.py) weigh a count that raises the price like a spent
# route budget, so a flood of fresh clients does not evict it first.
_FAILURE_WINDOWS = tuple(
    RateLimitItemPerMinute(2 ** (MAX_EXTRA_BITS + _WIDER_STEP_BITS * step), 10)
    for step in range(1 + _WIDER_NETWORKS)
)
KEY_PREFIX = "atopos-limits"
_log = logging.getLogger("atopos.server")
T = TypeVar("T")


def rate_limit_storage(url: str | None) -> Storage:
    """`limits`' storage for a URL: None or memory:// in this process; redis://, rediss://,
    unix:// or redis+cluster:// (rediss+cluster://) on Redis, shared by every node."""
    if url is None or url.startswith("memory://"):
        return MemoryStorage()
    try:
        if url.startswith(REDIS_CLUSTER_SCHEMES):
            return _cluster_storage(url)
        if url.startswith(REDIS_SCHEMES):
            return _redis_storage(url)
    except (ValueError, ConfigurationError):
        pass
    raise InvalidInput(
        "The rate-limit storage URL must be memory://, redis://host:port/0 or "
        "redis+cluster://host:port."
    )


_CLIENT_NAME = "atopos-limits"


def _cluster_storage(url: str) -> Storage:
    from atopos.storage.redis_clients import async_cluster_options

    options = async_cluster_options(url, client_name=_CLIENT_NAME)
    uri = "async+redis+cluster://" + url.split("://", 1)[1]
    return RedisClusterStorage(
        uri, implementation="redispy", key_prefix=KEY_PREFIX, wrap_exceptions=True, **options
    )


def _redis_storage(url: str) -> Storage:
    from atopos.storage.redis_clients import async_blocking_pool

    pool = async_blocking_pool(url, client_name=_CLIENT_NAME, max_connections=64, wait=5)
    if url.startswith("unix://"):
        uri = "async+redis+unix://" + url.removeprefix("unix://")
    else:
        uri = "async+" + url
    return RedisStorage(
        uri,
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        connection_pool=pool,  # type: ignore[arg-type]
    )


# The hourly budget of bytes one client may upload (server/secrets/quota.py).
UPLOAD_BUDGET = "upload-bytes"
_TOO_MANY_REQUESTS = "Too many requests; slow down and try again later."
_BUDGET_SPENT = "This client's upload quota for the hour is spent; try again later."


def _scaled(
    kind: type[RateLimitItem], amounts: dict[str, int]
) -> dict[str, tuple[RateLimitItem, ...]]:
    """Per name: the client's budget, then each wider network's, 4 times larger each."""
    return {
        name: tuple(
            kind(amount << (_WIDER_STEP_BITS * step)) for step in range(1 + _WIDER_NETWORKS)
        )
        for name, amount in amounts.items()
        if amount
    }


def _keys(client: ClientId | str) -> tuple[str, ...]:
    return (client,) if isinstance(client, str) else client.keys()


def _key_for(item: RateLimitItem, name: str, key: str) -> str:
    """`item.key_for(name, key)`, for string identifiers, without its list and conversions."""
    return f"{item.namespace}/{name}/{key}/{item.amount}/{item.multiples}/{item.GRANULARITY.name}"


def _storage_errors(storage: Storage) -> tuple[type[Exception], ...]:
    """What a storage raises when it cannot answer. `limits` wraps the client's RedisError in
    StorageError, but not the Cluster client's RedisClusterException (no node reachable)."""
    if isinstance(storage, MemoryStorage | SharedCounterStorage):
        return (StorageError,)
    # Imported here: a node that keeps its counters in memory never loads the Redis client.
    from redis.exceptions import RedisClusterException, RedisError

    return (StorageError, RedisError, RedisClusterException, OSError)


class RateLimits:
    def __init__(
        self,
        per_minute: dict[str, int],
        storage: Storage | None = None,
        persistence_check: PersistenceCheck | None = None,
        clock: Clock | None = None,
        *,
        per_hour: dict[str, int] | None = None,
    ) -> None:
        """`per_minute`: requests per route class; `per_hour`: amounts (bytes uploaded) per
        budget name; 0 leaves a route or budget unlimited."""
        storage = MemoryStorage() if storage is None else storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        # The workers' table (in memory: no persistence check) is hit directly, under the
        # key `limits` would use, so that its reads of the same counters (a refusal's wait,
        # the failure bits) agree: its layers cost as much again as the table's own step, on
        # every request (performance.md).
        self._table: SharedCounterTable | None = (
            storage.table
            if isinstance(storage, SharedCounterStorage) and persistence_check is None
            else None
        )
        self._storage_errors = _storage_errors(storage)
        # Per route: the client's budget, then each wider network's, 4 times larger each.
        self._items = _scaled(RateLimitItemPerMinute, per_minute)
        self._hourly = _scaled(RateLimitItemPerHour, per_hour or {})
        self._persistence_check = persistence_check
        self._clock = clock or SystemClock()
        self._outages = OutageLog(_log, "rate-limit storage")

    async def hit(self, route: str, client: ClientId | str) -> None:
        """Count one request against the client's budget, and against each wider network's
        budget (4 times larger per step, server/identity.py); raise RateLimited (with the
        seconds to wait) when any of them is spent."""
        await self._take(self._items, route, client, 1, _TOO_MANY_REQUESTS)

    async def spend(self, budget: str, client: ClientId | str, amount: int) -> None:
        """Take `amount` from the client's hourly budget (as `hit` does for requests)."""
        await self._take(self._hourly, budget, client, amount, _BUDGET_SPENT)

    async def _take(
        self,
        table: dict[str, tuple[RateLimitItem, ...]],
        name: str,
        client: ClientId | str,
        cost: int,
        message: str,
    ) -> None:
        items = table.get(name)
        if items is None:
            return
        for item, key in zip(items, _keys(client), strict=False):
            if await self._hit(item, name, key, cost):
                continue
            stats = await self._ask(partial(self._limiter.get_window_stats, item, name, key))
            # `limits` reports reset times on its own wall clock.
            retry_after = max(1, math.ceil(stats.reset_time - self._clock.now()))
            raise RateLimited(message, retry_after)

    async def record_failure(self, client: ClientId | str) -> None:
        for item, key in zip(_FAILURE_WINDOWS, _keys(client), strict=False):
            await self._hit(item, "failures", key, 1)

    async def extra_bits(self, client: ClientId | str) -> int:
        """One bit per doubling of the failures counted for the client, or for a wider
        network where they count 4 times less per step (so 16 times less at a /48)."""
        bits = 0
        for step, (item, key) in enumerate(zip(_FAILURE_WINDOWS, _keys(client), strict=False)):
            stats = await self._ask(partial(self._limiter.get_window_stats, item, "failures", key))
            failures = item.amount - stats.remaining
            bits = max(bits, max(0, failures).bit_length() - _WIDER_STEP_BITS * step)
        return min(MAX_EXTRA_BITS, bits)

    async def _hit(self, item: RateLimitItem, name: str, key: str, cost: int) -> bool:
        """`limits`' sliding-window hit: True when `cost` was taken from the counter."""
        table = self._table
        if table is None:
            return await self._ask(partial(self._limiter.hit, item, name, key, cost=cost))
        try:
            is_taken = table.acquire(
                _key_for(item, name, key), item.get_expiry(), item.amount, cost
            )
        except TableBusy as exc:
            raise self._unavailable(exc) from None
        self._outages.up()
        return is_taken

    async def _ask(self, question: Callable[[], Awaitable[T]]) -> T:
        """One question to the counters' storage, once they may be written there; a storage
        that cannot answer is Unavailable (limits fail closed)."""
        await self._ensure_off_disk()
        try:
            answer = await question()
        except self._storage_errors as exc:
            raise self._unavailable(exc) from None
        self._outages.up()
        return answer

    async def _ensure_off_disk(self) -> None:
        """Before counters are touched: the Redis holding them has been seen to persist
        nothing since it last failed (asked again after every outage)."""
        if self._persistence_check is None or self._persistence_check.is_verified:
            return
        try:
            await self._persistence_check.ensure()
        except Unavailable as exc:
            if self._persistence_check.is_refused:
                raise  # said once, at error level, by the check
            raise self._unavailable(exc.__cause__ or exc) from None

    def _unavailable(self, exc: BaseException) -> Unavailable:
        if self._persistence_check is not None:
            self._persistence_check.forget()
        self._outages.down(exc.storage_error if isinstance(exc, StorageError) else exc)
        return Unavailable(UNAVAILABLE_MESSAGE)
