"""Every Redis client of Atopos is built here, from a storage URL, with one set of timeouts.

URLs: redis://, rediss:// (TLS) and unix:// for one Redis; redis+cluster:// and
rediss+cluster:// for a Redis Cluster named by one or more of its nodes (storage/urls.py).
The secret store (storage/redis.py), the rate-limit counters (server/ratelimit.py) and the
"must not persist" check (storage/ephemeral_redis.py) differ only in their client name and
in how they retry (`Retries`). Importing this module loads the Redis client; callers that
may run without Redis import it where they need it.
"""

from __future__ import annotations

import enum
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import AbstractBackoff, ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from atopos.storage.urls import REDIS_CLUSTER_SCHEMES, ClusterUrl

__all__ = [
    "CONNECT_TIMEOUT",
    "SOCKET_TIMEOUT",
    "Retries",
    "async_blocking_pool",
    "async_client",
    "async_cluster_options",
    "async_server_client",
    "sync_client",
]

# A Redis that takes longer than this to answer a command is treated as down.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0


class Retries(enum.Enum):
    """How a client retries a failed command."""

    # Not retried: an unreachable Redis is asked again later, not waited for now.
    NEVER = "never"
    # One immediate retry on a connection error: mostly a pooled connection that died with a
    # restarted Redis. Not on a timeout, after which the command may well have run.
    ONCE_ON_DISCONNECT = "once on disconnect"
    # A few quick retries: they follow a Cluster failover or resharding to the new owner.
    FOLLOW_CLUSTER = "follow cluster"

    def _arguments(self) -> tuple[AbstractBackoff, int, tuple[type[RedisError], ...] | None]:
        if self is Retries.NEVER:
            return NoBackoff(), 0, None
        if self is Retries.ONCE_ON_DISCONNECT:
            return NoBackoff(), 1, (RedisConnectionError,)
        return ExponentialBackoff(cap=0.5, base=0.05), 2, None

    def sync_retry(self) -> redis.retry.Retry:
        backoff, retries, errors = self._arguments()
        if errors is None:
            return redis.retry.Retry(backoff, retries)
        return redis.retry.Retry(backoff, retries, supported_errors=errors)

    def async_retry(self) -> redis.asyncio.retry.Retry:
        backoff, retries, errors = self._arguments()
        if errors is None:
            return redis.asyncio.retry.Retry(backoff, retries)
        return redis.asyncio.retry.Retry(backoff, retries, supported_errors=errors)


def _default_retries(url: str) -> Retries:
    return Retries.FOLLOW_CLUSTER if _is_cluster(url) else Retries.ONCE_ON_DISCONNECT


def _is_cluster(url: str) -> bool:
    return url.startswith(REDIS_CLUSTER_SCHEMES)


def _timeouts(client_name: str) -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "client_name": client_name,
    }


def async_client(
    url: str, *, client_name: str, retries: Retries | None = None
) -> redis.asyncio.Redis | AsyncRedisCluster:
    """An asyncio client of the Redis or Cluster at `url`; `retries` defaults to once on a
    connection error (one Redis) or to following failovers (a Cluster). ValueError or
    RedisClusterException for a URL the client cannot take."""
    retry = (retries or _default_retries(url)).async_retry()
    if _is_cluster(url):
        cluster = ClusterUrl.parse(url)
        return AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(host, port) for host, port in cluster.nodes],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.tls,
            retry=retry,
            **_timeouts(client_name),
        )
    return redis.asyncio.Redis.from_url(url, retry=retry, **_timeouts(client_name))


def sync_client(
    url: str, *, client_name: str, retries: Retries | None = None
) -> redis.Redis | RedisCluster:
    """A blocking client of the Redis or Cluster at `url` (for short questions asked from a
    thread); a context manager that closes its connections."""
    retry = (retries or _default_retries(url)).sync_retry()
    if _is_cluster(url):
        cluster = ClusterUrl.parse(url)
        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in cluster.nodes
            ],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.tls,
            retry=retry,
            **_timeouts(client_name),
        )
    return redis.Redis.from_url(url, retry=retry, **_timeouts(client_name))


def async_blocking_pool(
    url: str, *, client_name: str, max_connections: int, wait: float
) -> redis.asyncio.BlockingConnectionPool:
    """An asyncio pool for one Redis (not a Cluster) where a burst waits up to `wait`
    seconds for a free connection instead of failing for want of one."""
    return redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait,
        retry=Retries.ONCE_ON_DISCONNECT.async_retry(),
        **_timeouts(client_name),
    )


def async_cluster_options(url: str, *, client_name: str) -> dict[str, Any]:
    """Keyword arguments for an asyncio Cluster client that another library (`limits`) builds
    from `url` itself: our timeouts and name, TLS as the URL says, its own retries."""
    return {**_timeouts(client_name), "ssl": url.startswith("rediss+")}


def async_server_client(
    url: str, *, client_name: str, host: str | None = None, port: int | None = None
) -> redis.asyncio.Redis:
    """An asyncio client of one Redis server: the one `url` names, or, for a Cluster URL,
    the node at `host`:`port` with the URL's credentials and TLS. For what must talk to the
    very node that holds a slot (sharded pub/sub subscriptions), never retried."""
    retry = Retries.NEVER.async_retry()
    if not _is_cluster(url):
        return redis.asyncio.Redis.from_url(url, retry=retry, **_timeouts(client_name))
    if host is None or port is None:
        raise ValueError("a Cluster node needs its host and port")
    cluster = ClusterUrl.parse(url)
    return redis.asyncio.Redis(
        host=host,
        port=port,
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.tls,
        retry=retry,
        **_timeouts(client_name),
    )
