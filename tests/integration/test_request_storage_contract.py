"""The storage port's contract for secret requests (storage/request_port.py), run against
every real adapter: SQLite, one Redis, and a 3-master Redis Cluster."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

import pytest

from atopos.storage.port import SecretStore
from atopos.storage.redis import RedisSecretStore
from atopos.storage.request_port import NewRequest, RequestState, RequestStore, RequestTaken
from atopos.storage.sqlite import SqliteSecretStore
from tests.integration.store_scenarios import NOW, StoreFactory, run_on


class Store(SecretStore, RequestStore, Protocol):
    """Both ports, as each adapter implements them."""


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        return lambda: SqliteSecretStore(tmp_path / "atopos.db")
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url = request.getfixturevalue(fixture)
    return lambda: RedisSecretStore.from_url(url)


def new_request(ttl: int = 600) -> NewRequest:
    return NewRequest(
        request_id=os.urandom(16),
        token_hash=os.urandom(32),
        fill_token_hash=os.urandom(32),
        device_key=os.urandom(32),
        access_key=os.urandom(32),
        created_at=NOW,
        expires_at=NOW + ttl,
        secret_lifetime=3600,
    )


def as_requests(store: SecretStore) -> Store:
    assert isinstance(store, SqliteSecretStore | RedisSecretStore)
    return store  # type: ignore[return-value]


def test_a_request_is_kept_whole_and_starts_open(store_factory: StoreFactory) -> None:
    async def scenario(secrets: SecretStore) -> None:
        store = as_requests(secrets)
        record = new_request()
        await store.create_request(record)
        info = await store.request_info(record.request_id, NOW)
        assert info is not None
        assert info.state is RequestState.OPEN
        assert (info.token_hash, info.fill_token_hash) == (
            record.token_hash,
            record.fill_token_hash,
        )
        assert (info.device_key, info.access_key) == (record.device_key, record.access_key)
        assert (info.created_at, info.expires_at, info.secret_lifetime) == (NOW, NOW + 600, 3600)
        assert info.secret_id is None
        assert await store.request_info(os.urandom(16), NOW) is None

    run_on(store_factory, scenario)


def test_claim_release_complete(store_factory: StoreFactory) -> None:
    async def scenario(secrets: SecretStore) -> None:
        store = as_requests(secrets)
        record = new_request()
        await store.create_request(record)
        first, second = os.urandom(16), os.urandom(16)
        claimed = await store.claim_request(record.request_id, first, NOW)
        assert (claimed.state, claimed.secret_id) == (RequestState.FILLING, first)
        with pytest.raises(RequestTaken):
            await store.claim_request(record.request_id, second, NOW)
        # A release names the claim it undoes; another secret's release changes nothing.
        await store.release_request(record.request_id, second)
        info = await store.request_info(record.request_id, NOW)
        assert info is not None
        assert info.secret_id == first
        await store.release_request(record.request_id, first)
        info = await store.request_info(record.request_id, NOW)
        assert info is not None
        assert info.state is RequestState.OPEN
        await store.claim_request(record.request_id, second, NOW)
        await store.complete_request(record.request_id, second, NOW + 5000, NOW)
        info = await store.request_info(record.request_id, NOW + 1000)
        assert info is not None
        assert (info.state, info.secret_id, info.expires_at) == (
            RequestState.FILLED,
            second,
            NOW + 5000,
        )
        # Filled is final: no release reopens it and no claim takes it again.
        await store.release_request(record.request_id, second)
        with pytest.raises(RequestTaken):
            await store.claim_request(record.request_id, first, NOW)

    run_on(store_factory, scenario)


def test_an_expired_request_is_gone_and_cannot_be_claimed(store_factory: StoreFactory) -> None:
    async def scenario(secrets: SecretStore) -> None:
        store = as_requests(secrets)
        record = new_request(ttl=60)
        await store.create_request(record)
        assert await store.request_info(record.request_id, NOW + 60) is None
        with pytest.raises(RequestTaken):
            await store.claim_request(record.request_id, os.urandom(16), NOW + 60)
        with pytest.raises(RequestTaken):
            await store.claim_request(os.urandom(16), os.urandom(16), NOW)
        if isinstance(secrets, SqliteSecretStore):  # Redis forgets it by its own TTL
            await secrets.sweep(NOW + 60)
            assert await store.request_info(record.request_id, NOW) is None

    run_on(store_factory, scenario)


def test_of_concurrent_claims_exactly_one_wins(store_factory: StoreFactory) -> None:
    async def scenario(secrets: SecretStore) -> None:
        store = as_requests(secrets)
        record = new_request()
        await store.create_request(record)

        async def attempt() -> bytes | None:
            secret_id = os.urandom(16)
            try:
                await store.claim_request(record.request_id, secret_id, NOW)
            except RequestTaken:
                return None
            return secret_id

        results = await asyncio.gather(*(attempt() for _ in range(100)))
        winners = [result for result in results if result is not None]
        assert len(winners) == 1
        info = await store.request_info(record.request_id, NOW)
        assert info is not None
        assert info.secret_id == winners[0]

    run_on(store_factory, scenario)


def test_requests_survive_a_reopen(store_factory: StoreFactory) -> None:
    async def scenario() -> None:
        record = new_request()
        store = store_factory()
        await store.start(NOW)
        await as_requests(store).create_request(record)
        await store.aclose()
        store = store_factory()
        await store.start(NOW)
        try:
            info = await as_requests(store).request_info(record.request_id, NOW)
            assert info is not None
            assert info.state is RequestState.OPEN
        finally:
            await store.aclose()

    asyncio.run(scenario())
