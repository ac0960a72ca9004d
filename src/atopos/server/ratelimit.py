"""Per-identifier rate limits and failure counts on the `limits` library.

The storage is `limits`' in-memory one for a single node, its Redis storage when nodes
share a Redis, so limits hold across nodes.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from atopos.errors import RateLimited

__all__ = ["RateLimits"]

# Failures (bad proof of work, bad or replayed ticket) are counted over this window; each
# doubling of the count adds one bit of proof-of-work difficulty, up to MAX_EXTRA_BITS.
_FAILURE_WINDOW = RateLimitItemPerMinute(1_000_000, 10)
MAX_EXTRA_BITS = 8


class RateLimits:
    def __init__(self, per_minute: dict[str, int], storage: Storage | None = None) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage or MemoryStorage())
        self._items = {
            route: RateLimitItemPerMinute(amount) for route, amount in per_minute.items() if amount
        }

    async def hit(self, route: str, ident: str) -> None:
        """Count one request; raise RateLimited (with seconds to wait) when over the limit."""
        item = self._items.get(route)
        if item is None:
            return
        if not await self._limiter.hit(item, route, ident):
            stats = await self._limiter.get_window_stats(item, route, ident)
            # `limits` reports reset times on its own wall clock.
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited("Too many requests; slow down and try again later.", retry_after)

    async def record_failure(self, ident: str) -> None:
        await self._limiter.hit(_FAILURE_WINDOW, "failures", ident)

    async def extra_bits(self, ident: str) -> int:
        stats = await self._limiter.get_window_stats(_FAILURE_WINDOW, "failures", ident)
        failures = _FAILURE_WINDOW.amount - stats.remaining
        return min(MAX_EXTRA_BITS, max(0, failures).bit_length())
