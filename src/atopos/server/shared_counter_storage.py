"""`limits`' storage port over the workers' shared counter table (server/shared_counters.py).

RateLimits (server/ratelimit.py) drives it with the sliding-window counter strategy, as it
drives the in-process and the Redis storages; only that strategy's calls are served. A table
whose lock stays held raises TableBusy, which `limits` wraps in StorageError: the request
then fails with 503, as it does when a Redis cannot be reached (limits fail closed).
"""

from __future__ import annotations

from limits.aio.storage import SlidingWindowCounterSupport, Storage

from atopos.server.shared_counters import SharedCounterTable, TableBusy

__all__ = ["SharedCounterStorage"]


class SharedCounterStorage(Storage, SlidingWindowCounterSupport):
    STORAGE_SCHEME = None

    def __init__(self, table: SharedCounterTable) -> None:
        super().__init__(wrap_exceptions=True)
        self._table = table

    @property
    def table(self) -> SharedCounterTable:
        return self._table

    @property
    def base_exceptions(self) -> type[Exception]:
        return TableBusy

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self._table.acquire(key, expiry, limit, amount)

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self._table.window(key, expiry)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        self._table.clear(key)

    async def clear(self, key: str) -> None:
        self._table.clear(key)

    async def reset(self) -> int | None:
        self._table.reset()
        return None

    async def check(self) -> bool:
        return True

    # The fixed-window strategies' calls: RateLimits never makes them.
    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("the shared table serves the sliding-window counter only")

    async def get(self, key: str) -> int:
        raise NotImplementedError("the shared table serves the sliding-window counter only")

    async def get_expiry(self, key: str) -> float:
        raise NotImplementedError("the shared table serves the sliding-window counter only")
