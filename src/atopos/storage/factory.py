"""Pick the storage adapter named by a storage URL."""

from __future__ import annotations

from atopos.errors import InvalidInput
from atopos.storage.port import SecretStore

__all__ = ["open_store"]


def open_store(url: str) -> SecretStore:
    if url.startswith("sqlite:///"):
        from atopos.storage.sqlite import SqliteSecretStore

        return SqliteSecretStore.from_url(url)
    raise InvalidInput("Unsupported storage URL; use sqlite:///path/to/atopos.db.")
