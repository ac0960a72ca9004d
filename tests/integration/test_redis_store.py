"""What the Redis adapter adds to the storage contract, checked in Redis itself: key layout
and hash tags, native TTLs, chunk sizes, burned chunks removed, faults reported as
Unavailable with one log line, and recovery without a restart."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from atopos.errors import Gone, Unavailable
from atopos.storage.port import SecretStore
from atopos.storage.redis import (
    CHUNK_BYTES,
    STREAM_GRACE,
    UPLOAD_LEASE,
    RedisSecretStore,
    SecretKeys,
)
from tests.integration import store_scenarios
from tests.integration.store_scenarios import NOW, StoreFactory, body, run_on
from tests.redis_servers import RedisClusterServers, RedisServer
from tests.servers import free_port

secret = functools.partial(store_scenarios.secret, kind="file")


@dataclasses.dataclass
class Backend:
    url: str
    client: redis.Redis | redis.RedisCluster

    def keys(self, pattern: bytes) -> list[bytes]:
        if isinstance(self.client, redis.RedisCluster):
            found = self.client.keys(pattern, target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            found = self.client.keys(pattern)
        return sorted(found)

    def secret_keys(self, keys: SecretKeys) -> list[bytes]:
        return self.keys(keys.prefix + b"*")


@pytest.fixture(params=["redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    client: redis.Redis | redis.RedisCluster
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        client = server.client()
        url = server.url
    else:
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        url = cluster.url
    try:
        yield Backend(url, client)
    finally:
        client.close()


def store_at(url: str) -> StoreFactory:
    return lambda: RedisSecretStore.from_url(url)


def test_keys_share_one_hash_tag_and_expire_with_the_secret(backend: Backend) -> None:
    record = secret(views=2, ttl=600)
    data = os.urandom(2 * CHUNK_BYTES + 5)
    keys = SecretKeys(record.secret_id)
    ttls: dict[bytes, int] = {}

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(data))
        ttls.update({name: backend.client.ttl(name) for name in [keys.meta, *keys.chunks(3)]})
        revealed = await store.consume(record.secret_id, b"t" * 16, NOW + 60, NOW)
        assert b"".join([piece async for piece in revealed.chunks]) == data

    run_on(store_at(backend.url), scenario)
    assert all(590 <= ttl <= 600 for ttl in ttls.values()), ttls
    names = backend.secret_keys(keys)
    # Meta, three chunks and the used ticket; no reader is left streaming.
    assert names == sorted([keys.meta, *keys.chunks(3), keys.ticket(b"t" * 16)])
    assert len({key_slot(name) for name in names}) == 1
    # The id itself never appears in a key name; only its digest does.
    assert not any(record.secret_id.hex().encode() in name for name in names)
    assert 590 <= backend.client.ttl(keys.meta) <= 600
    assert 50 <= backend.client.ttl(keys.ticket(b"t" * 16)) <= 60
    for name in keys.chunks(3):
        assert backend.client.strlen(name) <= CHUNK_BYTES
        # A view extends the chunks' life to the stream grace at most, never shortens it.
        assert 590 <= backend.client.ttl(name) <= max(600, STREAM_GRACE)
    assert backend.client.hget(keys.meta, "views_left") == b"1"


def test_small_secrets_live_in_one_hash(backend: Backend) -> None:
    record = secret(ttl=3600)
    keys = SecretKeys(record.secret_id)

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(b"small"))

    run_on(store_at(backend.url), scenario)
    assert backend.secret_keys(keys) == [keys.meta]
    assert backend.client.hget(keys.meta, "body") == b"small"
    assert 3590 <= backend.client.ttl(keys.meta) <= 3600


def test_burn_delete_and_failed_upload_leave_no_chunk(backend: Backend) -> None:
    burned, deleted, failed = secret(), secret(), secret()
    data = os.urandom(CHUNK_BYTES * 3)

    async def failing() -> AsyncIterator[bytes]:
        yield data
        raise ValueError("client went away")

    async def scenario(store: SecretStore) -> None:
        await store.create(burned, body(data))
        await store.create(deleted, body(data))
        revealed = await store.consume(burned.secret_id, b"b" * 16, NOW + 60, NOW)
        assert len(b"".join([piece async for piece in revealed.chunks])) == len(data)
        assert await store.delete(deleted.secret_id) is True
        with pytest.raises(ValueError, match="went away"):
            await store.create(failed, failing())

    run_on(store_at(backend.url), scenario)
    # The burn left no key at all: not even a marker for its ticket (nothing to buy).
    assert backend.secret_keys(SecretKeys(burned.secret_id)) == []
    assert backend.secret_keys(SecretKeys(deleted.secret_id)) == []
    assert backend.secret_keys(SecretKeys(failed.secret_id)) == []


def test_a_reader_that_never_finishes_leaves_chunks_only_for_the_grace(
    backend: Backend,
) -> None:
    """A node that dies mid-stream never releases; the burned chunks then expire soon."""
    record = secret(ttl=30 * 24 * 3600)
    keys = SecretKeys(record.secret_id)

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(os.urandom(CHUNK_BYTES * 2)))
        revealed = await store.consume(record.secret_id, b"d" * 16, NOW + 60, NOW)
        # The node "dies" here, having taken the view: its stream never runs, so it
        # never releases the chunks. (Reading a chunk first would not do: asyncio
        # closes a started stream at shutdown, which releases.)
        assert revealed.size == 2 * CHUNK_BYTES

    run_on(store_at(backend.url), scenario)
    assert not backend.client.exists(keys.meta)
    for name in [*keys.chunks(2), keys.readers]:
        assert 0 < backend.client.ttl(name) <= STREAM_GRACE


def test_chunks_of_an_unpublished_upload_carry_the_upload_lease(backend: Backend) -> None:
    record = secret(ttl=30 * 24 * 3600)
    keys = SecretKeys(record.secret_id)
    seen: dict[str, object] = {}

    async def slow_upload() -> AsyncIterator[bytes]:
        yield os.urandom(CHUNK_BYTES * 2 + 1)
        # Two chunks are in Redis now; nothing is visible yet.
        seen["keys"] = backend.secret_keys(keys)
        seen["ttls"] = [backend.client.ttl(name) for name in keys.chunks(2)]
        yield b"tail"

    async def scenario(store: SecretStore) -> None:
        await store.create(record, slow_upload())

    run_on(store_at(backend.url), scenario)
    assert seen["keys"] == keys.chunks(2)
    assert all(0 < ttl <= UPLOAD_LEASE for ttl in seen["ttls"])  # type: ignore[attr-defined]
    assert backend.client.ttl(keys.chunk(0)) > UPLOAD_LEASE


def test_a_stream_that_began_before_expiry_outlives_it(backend: Backend) -> None:
    """A view taken just before the secret expires keeps its chunks while it streams."""
    record = secret(views=2, ttl=60)
    keys = SecretKeys(record.secret_id)
    data = os.urandom(CHUNK_BYTES * 2)

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(data))
        revealed = await store.consume(record.secret_id, b"e" * 16, NOW + 59, NOW + 59)
        for name in keys.chunks(2):
            assert backend.client.ttl(name) > 60
        assert b"".join([piece async for piece in revealed.chunks]) == data
        with pytest.raises(Gone):
            await store.consume(record.secret_id, b"f" * 16, NOW + 120, NOW + 60)

    run_on(store_at(backend.url), scenario)


def test_unreachable_redis_is_unavailable_with_one_log_line_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No Redis on the port: every operation is Unavailable (never Gone); the same store
    object serves again, with no restart, once a Redis answers there."""
    port = free_port()
    record = secret()

    async def down(store: SecretStore) -> None:
        with pytest.raises(Unavailable):
            await store.check()
        with pytest.raises(Unavailable):
            await store.create(record, body(b"x"))
        with pytest.raises(Unavailable):
            await store.info(record.secret_id, NOW)
        with pytest.raises(Unavailable):
            await store.consume(record.secret_id, b"u" * 16, NOW + 60, NOW)
        with pytest.raises(Unavailable):
            await store.delete(record.secret_id)

    async def scenario(store: SecretStore) -> None:
        await down(store)
        server = RedisServer(tmp_path / "redis", port=port).start()
        try:
            await store.check()
            assert await store.create(record, body(b"back")) == 4
            revealed = await store.consume(record.secret_id, b"u" * 16, NOW + 60, NOW)
            assert b"".join([piece async for piece in revealed.chunks]) == b"back"
        finally:
            server.stop()
        await down(store)

    with caplog.at_level(logging.DEBUG, logger="atopos.storage"):
        # The store starts while no Redis answers, as a node may start before its Redis.
        run_on(store_at(f"redis://127.0.0.1:{port}/0"), scenario)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["redis unreachable", "redis reachable again", "redis unreachable"]
    assert all(record.exc_info is None for record in caplog.records)


def test_a_redis_restart_is_survived_by_the_pool_and_the_script_cache(
    tmp_path: Path,
) -> None:
    """After a restart every pooled connection is dead and no script is loaded: the next
    call reconnects and reloads (NOSCRIPT) by itself."""
    server = RedisServer(tmp_path / "redis").start()
    record = secret(views=2)

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(b"kept"))
        await store.consume(record.secret_id, b"1" * 16, NOW + 60, NOW)
        server.kill9()
        server.start()
        revealed = await store.consume(record.secret_id, b"2" * 16, NOW + 60, NOW)
        assert b"".join([piece async for piece in revealed.chunks]) == b"kept"

    try:
        run_on(store_at(server.url), scenario)
    finally:
        server.stop()


def test_the_adapter_warns_when_redis_is_not_durable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="everysec").start()

    async def start_only(store: SecretStore) -> None:
        """The warning, if any, is logged by start itself."""

    try:
        with caplog.at_level(logging.WARNING, logger="atopos.storage"):
            run_on(store_at(server.url), start_only)
    finally:
        server.stop()
    assert any("appendfsync always" in record.getMessage() for record in caplog.records)


def test_the_receipts_key_expires_with_the_secret_also_after_the_burn(backend: Backend) -> None:
    # The receipts outlive the burn of the last view, but never the secret's lifetime: their
    # key carries the secret's TTL from the start and keeps it through each view.
    record = secret(views=2, ttl=600)
    keys = SecretKeys(record.secret_id)
    ttls: list[int] = []

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(b"small"))
        ttls.append(backend.client.ttl(keys.receipts))
        for number in range(2):
            revealed = await store.consume(record.secret_id, b"%16d" % number, NOW + 60, NOW)
            await revealed.chunks.aclose()
            ttls.append(backend.client.ttl(keys.receipts))

    run_on(store_at(backend.url), scenario)
    assert backend.client.exists(keys.meta) == 0  # burned by its last view
    assert len(ttls) == 3
    assert all(590 <= ttl <= 600 for ttl in ttls), ttls
    assert key_slot(keys.receipts) == key_slot(keys.meta)
    assert record.secret_id.hex().encode() not in keys.receipts


def test_a_secret_stored_before_receipts_gets_them_from_its_meta(backend: Backend) -> None:
    # Secrets published before receipts existed have no receipts key: while they live, the
    # receipts are read from the meta (no view recorded), the next view creates the key with
    # the meta's TTL, and the last view leaves it readable as for any other secret.
    record = secret(views=2, ttl=600)
    keys = SecretKeys(record.secret_id)
    seen: list[tuple[int, ...] | None] = []

    async def scenario(store: SecretStore) -> None:
        await store.create(record, body(b"small"))
        backend.client.delete(keys.receipts)  # as written before receipts
        before = await store.receipts(record.secret_id, NOW)
        assert before is not None
        assert (before.manage_token_hash, before.expires_at) == (
            record.manage_token_hash,
            record.expires_at,
        )
        seen.append(before.viewed_at)
        for number in range(2):
            revealed = await store.consume(record.secret_id, b"%16d" % number, NOW + 60, NOW + 90)
            await revealed.chunks.aclose()
            after = await store.receipts(record.secret_id, NOW + 90)
            seen.append(None if after is None else after.viewed_at)
        assert await store.receipts(record.secret_id, record.expires_at) is None

    run_on(store_at(backend.url), scenario)
    minute = (NOW + 90) // 60 * 60
    assert seen == [(), (minute,), (minute, minute)]
    assert backend.client.exists(keys.meta) == 0  # burned by its last view
    assert 590 <= backend.client.ttl(keys.receipts) <= 600
