"""The request lifecycle table (protocol/request_lifecycle.py) drives every real adapter:
random sequences of open, claim (with fresh or repeated secret ids), release, complete, cancel and
the clock passing a claim's lease or expires_at, each step checked against the model on
SQLite, one Redis and a Redis Cluster."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from atopos.protocol.request_lifecycle import (
    RequestAnswer,
    RequestEvent,
    RequestLifecycle,
    RequestPhase,
)
from atopos.storage.port import SecretStore
from atopos.storage.redis import RedisSecretStore
from atopos.storage.request_port import CLAIM_LEASE_SECONDS, NewRequest, RequestTaken
from atopos.storage.sqlite import SqliteSecretStore
from tests.integration.store_scenarios import NOW, StoreFactory, run_on

# Long enough for a few claim leases to lapse within one request's life.
TTL = 4 * CLAIM_LEASE_SECONDS


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        return lambda: SqliteSecretStore(tmp_path / "atopos.db")
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url = request.getfixturevalue(fixture)
    return lambda: RedisSecretStore.from_url(url)


async def _walk(store: SqliteSecretStore | RedisSecretStore, seed: int) -> None:
    rng = random.Random(seed)
    request_id = os.urandom(16)
    model = RequestLifecycle()
    claimant: bytes | None = None  # the secret id the record holds, in the model
    lease_until = 0  # the end of the current claim's lease
    expires_at = NOW + TTL
    now = NOW
    events = list(RequestEvent)
    for _ in range(14):
        event = rng.choice(events) if model.phase is not RequestPhase.GONE else RequestEvent.OPEN
        if event is RequestEvent.OPEN and model.phase is not RequestPhase.GONE:
            continue  # request ids are fresh random bytes: OPEN never meets a stored one
        if event is RequestEvent.LAPSE and (
            model.phase is not RequestPhase.FILLING or lease_until >= expires_at
        ):
            continue  # only a live claim's lease can lapse before the request expires
        mine = rng.random() < 0.7
        secret_id = claimant if mine and claimant is not None else os.urandom(16)
        move = model.handle(event, is_own_claim=secret_id == claimant)
        if event is RequestEvent.OPEN:
            await store.create_request(
                NewRequest(
                    request_id=request_id,
                    token_hash=os.urandom(32),
                    fill_token_hash=os.urandom(32),
                    device_key=os.urandom(32),
                    access_key=os.urandom(32),
                    created_at=now,
                    expires_at=expires_at,
                    secret_lifetime=TTL,
                )
            )
        elif event is RequestEvent.CLAIM:
            try:
                await store.claim_request(request_id, secret_id, now)
                answer = RequestAnswer.CLAIMED
                claimant = secret_id
                lease_until = now + CLAIM_LEASE_SECONDS
            except RequestTaken:
                answer = RequestAnswer.TAKEN
            assert answer is move.answer, (seed, event)
        elif event is RequestEvent.RELEASE:
            await store.release_request(request_id, secret_id)
            if move.answer is RequestAnswer.CHANGED:
                claimant = None
        elif event is RequestEvent.COMPLETE:
            if move.answer is RequestAnswer.CHANGED:
                expires_at += 100
            completed = await store.complete_request(request_id, secret_id, expires_at, now)
            assert completed is (
                move.answer is RequestAnswer.CHANGED
                or (model.phase is RequestPhase.FILLED and secret_id == claimant)
            ), (seed, event)
        elif event is RequestEvent.CANCEL:
            cancelled = await store.cancel_request(request_id, now)
            assert cancelled is (move.answer is RequestAnswer.CHANGED), (seed, event)
            if cancelled:
                assert await store.request_info(request_id, now) is None, seed
                with pytest.raises(RequestTaken):
                    await store.claim_request(request_id, os.urandom(16), now)
                request_id = os.urandom(16)
                claimant = None
        elif event is RequestEvent.LAPSE:
            now = max(now, lease_until)
        else:  # EXPIRE: the clock reaches expires_at; a new request starts after
            now = expires_at
            assert await store.request_info(request_id, now) is None, seed
            with pytest.raises(RequestTaken):
                await store.claim_request(request_id, os.urandom(16), now)
            expires_at = now + TTL
            request_id = os.urandom(16)
            claimant = None
        info = await store.request_info(request_id, now)
        phase = RequestPhase.GONE if info is None else RequestPhase(info.state.value)
        assert phase is model.phase, (seed, event, phase, model.phase)
        if info is not None:
            assert info.secret_id == claimant, (seed, event)
            assert info.expires_at == expires_at, (seed, event)


def test_the_adapters_follow_the_table(store_factory: StoreFactory) -> None:
    async def scenario(store: SecretStore) -> None:
        assert isinstance(store, SqliteSecretStore | RedisSecretStore)
        for seed in range(40):
            await _walk(store, seed)

    run_on(store_factory, scenario)
