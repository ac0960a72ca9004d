"""The storage port every adapter implements, and the records that cross it.

Adapters hold ciphertext and the metadata that enforces a secret's life, nothing else:
no client address, no user agent, no plaintext, no link key. Each operation that decides
who gets a view (`consume`) is one atomic operation in the backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Protocol

from atopos.errors import Refused

__all__ = [
    "FULL_MESSAGE",
    "GONE_MESSAGE",
    "KIND_FILE",
    "KIND_TEXT",
    "UNAVAILABLE_MESSAGE",
    "NewSecret",
    "Receipts",
    "Revealed",
    "SecretInfo",
    "SecretStore",
    "TicketExpired",
    "TicketUsed",
    "spent_minute",
]

KIND_TEXT = "text"
KIND_FILE = "file"
# One wording for every adapter and the API, so no answer tells the cases apart.
GONE_MESSAGE = "This secret does not exist, has expired or was already viewed."
UNAVAILABLE_MESSAGE = "The server's storage is unavailable; try again shortly."
FULL_MESSAGE = "The server's storage is full; nothing was stored."


class TicketUsed(Refused):
    """The ticket was already redeemed: tickets are single-use."""

    def __init__(self) -> None:
        super().__init__("This ticket was already used.")


class TicketExpired(Refused):
    """The ticket's id expires at or before the store's sweep floor: a sweep may have
    forgotten it already, so it is never recorded again (docs/protocol/access.md, "Clock
    steps"). `sweep_floor` is the floor the store holds, for the node to catch up with."""

    def __init__(self, sweep_floor: int = 0) -> None:
        # The wording of an expired ticket at the access layer (server/access.py).
        super().__init__("The ticket is invalid or expired; start the reveal again.")
        self.sweep_floor = sweep_floor


@dataclasses.dataclass(frozen=True, slots=True)
class NewSecret:
    secret_id: bytes
    manage_token_hash: bytes
    kind: str
    views: int
    created_at: int
    expires_at: int
    device_key: bytes | None = None
    # From the envelope header (read, not trusted for anything but this hint): lets a
    # reader's client ask for the passphrase before it spends a view.
    has_passphrase: bool = False
    # The Ed25519 access key the ticket step checks a proof against (docs/protocol/access.md,
    # "Key-knowledge proof"); None only for secrets stored before it existed.
    access_key: bytes | None = None
    # The envelope header's Argon2id cost and salt (crypto/kdf.py ARGON2_FIELDS, 28 bytes):
    # a reader needs them for the proof before it has the envelope. None without passphrase.
    kdf_fields: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SecretInfo:
    secret_id: bytes
    manage_token_hash: bytes
    kind: str
    size: int
    views_left: int
    created_at: int
    expires_at: int
    device_key: bytes | None
    has_passphrase: bool = False
    access_key: bytes | None = None
    kdf_fields: bytes | None = None

    @property
    def is_bound(self) -> bool:
        return self.device_key is not None


@dataclasses.dataclass(frozen=True, slots=True)
class Receipts:
    """A secret's reveal receipts: the minute each view was spent, in order, and what the
    manage token is checked against. Kept, without any ciphertext, after the last view
    burns the secret and until `expires_at`, so the manage link can still say when."""

    manage_token_hash: bytes
    expires_at: int
    viewed_at: tuple[int, ...]


def spent_minute(now: int) -> int:
    """The receipt of a view spent at `now`: truncated to the minute, nothing finer."""
    return now - now % 60


@dataclasses.dataclass(slots=True)
class Revealed:
    """One consumed view: the ciphertext's size and its bytes, streamed in order.

    `chunks` must be iterated to the end or closed (`aclose`), so that an adapter holding
    a read snapshot for a large body can let it go.
    """

    size: int
    chunks: AsyncIterator[bytes]


class SecretStore(Protocol):
    async def start(self, now: int) -> None:
        """Connect, prepare the schema and sweep what a crash left behind."""
        ...

    async def create(self, secret: NewSecret, body: AsyncIterator[bytes]) -> int:
        """Store the secret and its ciphertext; return its size once durable.

        Nothing is visible before the whole body is stored. If `body` raises, nothing of
        this secret remains and the error propagates.
        """
        ...

    async def info(self, secret_id: bytes, now: int) -> SecretInfo | None:
        """The live secret's metadata, or None when unknown or expired."""
        ...

    async def consume(
        self, secret_id: bytes, ticket_id: bytes, ticket_expires_at: int, now: int
    ) -> Revealed:
        """Atomically redeem the ticket and take one view; the last view burns the secret.

        Raises TicketUsed when the ticket was redeemed before, TicketExpired when
        `ticket_expires_at` is at or below the sweep floor, Gone when the secret is unknown,
        expired or has no views left. A failed call consumes nothing.
        """
        ...

    async def receipts(self, secret_id: bytes, now: int) -> Receipts | None:
        """The secret's reveal receipts, live or burned by its last view, until it expires;
        None when unknown, deleted or expired. Every `consume` that takes a view records
        `spent_minute(now)` in the same atomic step."""
        ...

    async def delete(self, secret_id: bytes) -> bool:
        """Burn the secret now, and its receipts; False when there was nothing to burn."""
        ...

    async def sweep(self, now: int) -> int:
        """Burn expired secrets, forget expired tickets and receipts; return how many
        secrets. A store that forgets redeemed ticket ids itself raises its sweep floor to
        the time it forgot them up to, at least `now`."""
        ...

    async def sweep_floor(self) -> int:
        """The latest time up to which this store forgot redeemed ticket ids, written by
        any node's sweep: the node takes no decision at an earlier time, whatever its clock
        says (docs/protocol/access.md, "Clock steps"). 0 for a store that keeps none (Redis:
        its keys expire on their own)."""
        ...

    async def check(self) -> None:
        """Raise Unavailable when the backend cannot serve requests."""
        ...

    async def used_bytes(self) -> int:
        """About how much space the store takes now (for the operator's quota): cheap to
        ask, not exact."""
        ...

    async def aclose(self) -> None: ...
