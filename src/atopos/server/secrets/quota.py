"""The disk quota: the store may not grow past the operator's total, and one client may not
upload more than its hourly budget (docs/operations.md). Over the total, a create is refused
with 507; over the client's budget, with 429 and Retry-After. The store's size is asked at
most once a second (an estimate: concurrent uploads may overshoot it by what they carry)."""

from __future__ import annotations

from atopos.clock import Clock
from atopos.errors import StorageFull
from atopos.server.identity import ClientId
from atopos.server.ratelimit import UPLOAD_BUDGET, RateLimits
from atopos.storage.port import SecretStore

__all__ = ["StorageQuota"]
_REFRESH_SECONDS = 1.0


class StorageQuota:
    def __init__(
        self, store: SecretStore, limits: RateLimits, clock: Clock, *, total_bytes: int
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._total = total_bytes
        self._used = 0
        self._asked_at: float | None = None

    async def admit(self, client: ClientId, declared_bytes: int | None) -> None:
        """Before an upload: refuse it when the store is full, and charge the client's
        budget for its declared length (or, without one, charge it at the end)."""
        if self._total and await self._used_bytes() + (declared_bytes or 0) > self._total:
            raise StorageFull("The server's storage quota is used up; try again later.")
        if declared_bytes is not None:
            await self._limits.spend(UPLOAD_BUDGET, client, declared_bytes)

    async def charge_undeclared(self, client: ClientId, size: int) -> None:
        """After an upload that declared no length: charge what it carried."""
        await self._limits.spend(UPLOAD_BUDGET, client, size)

    async def _used_bytes(self) -> int:
        now = self._clock.monotonic()
        if self._asked_at is None or now - self._asked_at >= _REFRESH_SECONDS:
            self._used = await self._store.used_bytes()
            self._asked_at = now
        return self._used
