"""Reveal receipts for the manage link: the minute each view was spent, and a long poll
that answers as soon as the next view is spent (docs/protocol/access.md, "Reveal receipts").

The wait re-reads the store every `RECEIPT_POLL_SECONDS`, so a view spent on any node
(shared Redis) is seen within that interval; it is capped in length
(`MAX_RECEIPT_WAIT_SECONDS`) and in how many requests may wait at once on a node
(`MAX_RECEIPT_WAITERS`: past it a request is answered at once, as with `wait=0`). A wait
whose client has gone away ends at the next poll, so closed connections do not keep places.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from atopos.storage.port import Receipts, SecretStore

__all__ = [
    "MAX_RECEIPT_WAITERS",
    "MAX_RECEIPT_WAIT_SECONDS",
    "RECEIPT_POLL_SECONDS",
    "ReceiptWaiters",
]

RECEIPT_POLL_SECONDS = 0.25
MAX_RECEIPT_WAIT_SECONDS = 15
MAX_RECEIPT_WAITERS = 256


class ReceiptWaiters:
    """The long polls of one node: each waits for more than `seen` receipts, or the end."""

    def __init__(self, store: SecretStore, now: Callable[[], int]) -> None:
        self._store = store
        self._now = now
        self._waiting = 0

    async def wait(
        self,
        secret_id: bytes,
        first: Receipts,
        *,
        seen: int,
        wait: int,
        disconnected: Callable[[], Awaitable[bool]],
    ) -> Receipts | None:
        """`first` when it has more than `seen` receipts; otherwise the receipts once they
        do, or after `wait` seconds, or as they are once `disconnected()` says the client
        left; None when the secret expired or was deleted meanwhile."""
        if len(first.viewed_at) > seen or wait <= 0 or self._waiting >= MAX_RECEIPT_WAITERS:
            return first
        self._waiting += 1
        try:
            latest: Receipts | None = first
            # Counted in polls rather than read from a clock: the wait needs no time source.
            for _ in range(math.ceil(wait / RECEIPT_POLL_SECONDS)):
                await asyncio.sleep(RECEIPT_POLL_SECONDS)
                if await disconnected():
                    break
                latest = await self._store.receipts(secret_id, self._now())
                if latest is None or len(latest.viewed_at) > seen:
                    break
            return latest
        finally:
            self._waiting -= 1
