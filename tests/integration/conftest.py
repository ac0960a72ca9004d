"""Session-wide Redis servers for the integration tests: started once, emptied per test.

`redis_server` and `redis_cluster` are durable, like the Redis of secrets in deploy/;
`redis_ephemeral` persists nothing, like the one rate-limit counters must go to (a node
refuses to start with its counters on a Redis that persists)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mixnet_support import Lab
from tests.redis_servers import RedisClusterServers, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_ephemeral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer.ephemeral(tmp_path_factory.mktemp("redis-ephemeral")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_ephemeral(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterServers]:
    """A Redis Cluster that persists nothing, like the room Redis (issue 22)."""
    cluster = RedisClusterServers(
        tmp_path_factory.mktemp("redis-cluster-ephemeral"), appendonly=False
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, empty."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def redis_ephemeral_url(redis_ephemeral: RedisServer) -> str:
    """The session's Redis without persistence, empty: for rate-limit counters."""
    redis_ephemeral.flush()
    return redis_ephemeral.url


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The session's Redis Cluster, empty."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="package")
def mixnet_lab() -> Iterator[Lab]:
    """One test mixnet for the integration tests (3 layers x 2 nodes + 2 gateways, behind
    taps). Package scope, not session: its threads send cover traffic, and they must be gone
    before the unit tests, whose tracemalloc peaks count every thread's allocations."""
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def redis_cluster_ephemeral_url(redis_cluster_ephemeral: RedisClusterServers) -> str:
    """The session's Redis Cluster without persistence, empty: for room state."""
    redis_cluster_ephemeral.flush()
    return redis_cluster_ephemeral.url
