"""Pick the storage adapter named by a storage URL."""

from __future__ import annotations

from pathlib import Path

from atopos.clock import Clock, SystemClock
from atopos.errors import InvalidInput
from atopos.storage.request_port import SecretAndRequestStore
from atopos.storage.urls import is_redis_url

__all__ = ["open_store"]


def open_store(
    url: str,
    clock: Clock | None = None,
    *,
    is_shared_by_workers: bool = False,
    writer_lock_wait: float | None = None,
    writer_socket: Path | None = None,
) -> SecretAndRequestStore:
    """The store the URL names, reading intervals from `clock` (the system's by default).
    `is_shared_by_workers`: other processes of this node write the same SQLite file, and
    each write waits at most `writer_lock_wait` seconds for its turn (None: the default).
    `writer_socket`: an SQLite store's writes go to the node's writer process listening there
    (storage/sqlite_writer_process.py) instead of a writer thread of this process."""
    clock = clock or SystemClock()
    if url.startswith("sqlite:///"):
        from atopos.storage.sqlite import SqliteSecretStore
        from atopos.storage.sqlite_writer import DEFAULT_LOCK_WAIT

        return SqliteSecretStore.from_url(
            url,
            clock,
            is_shared_by_processes=is_shared_by_workers,
            writer_lock_wait=DEFAULT_LOCK_WAIT if writer_lock_wait is None else writer_lock_wait,
            writer_socket=writer_socket,
        )
    if is_redis_url(url):
        # Imported on demand: a node on SQLite never loads the Redis client.
        from atopos.storage.redis import RedisSecretStore

        return RedisSecretStore.from_url(url, clock)
    raise InvalidInput(
        "Unsupported storage URL; use sqlite:///path/to/atopos.db, redis://host:port/0 "
        "or redis+cluster://host:port."
    )
