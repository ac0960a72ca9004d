"""Running a scenario on a started secret store, and the records and bodies the storage
tests hand it (shared by the contract suite and the Redis adapter's own tests)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from atopos.storage.port import NewSecret, SecretStore

NOW = 1_800_000_000

Result = TypeVar("Result")
StoreFactory = Callable[[], SecretStore]


async def body(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def secret(views: int = 1, ttl: int = 600, kind: str = "text") -> NewSecret:
    return NewSecret(
        secret_id=os.urandom(16),
        manage_token_hash=os.urandom(32),
        kind=kind,
        views=views,
        created_at=NOW,
        expires_at=NOW + ttl,
    )


async def started(factory: StoreFactory) -> SecretStore:
    store = factory()
    await store.start(NOW)
    return store


def run_on(factory: StoreFactory, scenario: Callable[[SecretStore], Awaitable[Result]]) -> Result:
    """Runs `scenario` on a new started store in its own event loop, then closes the store."""

    async def main() -> Result:
        store = await started(factory)
        try:
            return await scenario(store)
        finally:
            await store.aclose()

    return asyncio.run(main())
