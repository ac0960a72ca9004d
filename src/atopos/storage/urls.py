"""The storage URL schemes, in a module light enough for the configuration to import."""

from __future__ import annotations

__all__ = ["REDIS_CLUSTER_SCHEMES", "REDIS_SCHEMES", "is_redis_url"]

# One Redis: TCP, TLS, or a Unix socket.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A Redis Cluster, named by one or more of its nodes: redis+cluster://host:port[,host:port].
REDIS_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_redis_url(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES)
