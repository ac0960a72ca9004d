"""The storage URL schemes, in a module light enough for the configuration to import."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["REDIS_CLUSTER_SCHEMES", "REDIS_SCHEMES", "ClusterUrl", "is_redis_url", "sqlite_path"]

# One Redis: TCP, TLS, or a Unix socket.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A Redis Cluster, named by one or more of its nodes: redis+cluster://host:port[,host:port].
REDIS_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_redis_url(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES)


def sqlite_path(url: str) -> Path:
    """The database file an SQLite storage URL names; ValueError for any other URL."""
    if not url.startswith("sqlite:///"):
        raise ValueError("an SQLite storage URL looks like sqlite:///path/to/atopos.db")
    return Path(url.removeprefix("sqlite://"))


@dataclasses.dataclass(frozen=True)
class ClusterUrl:
    """redis+cluster://[user:password@]host:port[,host:port] (rediss+cluster:// for TLS),
    taken apart for a Cluster client."""

    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        """A ValueError when a node has no port or a port that is not a number."""
        parts = urlsplit(url)
        nodes = []
        for location in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = location.rpartition(":")
            nodes.append((host.strip("[]"), int(port)))
        return cls(
            nodes=nodes,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=url.startswith("rediss+"),
        )
