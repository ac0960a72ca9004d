"""The storage port of secret requests (docs/protocol/requests.md), and its records.

A request is a slot a requester opens for one secret to be filled in by someone else. Its
record holds only what the server enforces: hashes of the requester's and the filler's
tokens, the requester's device key and the access key the filled secret will get, and its
times. Filling is one atomic *claim* (an open request takes the id of the secret being
uploaded; a second claim fails), then the upload, then *complete* (or *release* when the
upload failed, which opens the request again). The requester may *cancel* a request no
fill holds, which forgets it.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

from atopos.errors import Gone
from atopos.storage.port import SecretStore

__all__ = [
    "CLAIM_LEASE_SECONDS",
    "REQUEST_GONE_MESSAGE",
    "NewRequest",
    "RequestInfo",
    "RequestState",
    "RequestStore",
    "RequestTaken",
    "SecretAndRequestStore",
]

# One wording for unknown, expired, cancelled and already filled: no answer tells them apart.
REQUEST_GONE_MESSAGE = (
    "This request does not exist, has expired, was cancelled or was already filled."
)


# How long a claim holds the request for its upload. A node that dies between claim and
# complete leaves a claim that lapses after this, so the request opens to a new fill (the
# secret of a lapsed claim, if it was stored, still wins: requests.md section 6). Longer
# than any sane upload; a slower one still completes unless another fill took the lapsed
# claim, in which case its complete fails and its secret is deleted.
CLAIM_LEASE_SECONDS = 15 * 60


class RequestTaken(Gone):
    """The request is not open: unknown, expired, being filled or filled."""

    def __init__(self) -> None:
        super().__init__(REQUEST_GONE_MESSAGE)


class RequestState(enum.Enum):
    OPEN = "open"
    # Claimed by an upload that has not finished (or whose node died: see requests.md).
    FILLING = "filling"
    FILLED = "filled"


@dataclasses.dataclass(frozen=True, slots=True)
class NewRequest:
    request_id: bytes
    # SHA-256 of the requester's token (it also manages the filled secret).
    token_hash: bytes
    # SHA-256 of the fill token (crypto/request_keys.py), derived from the request key.
    fill_token_hash: bytes
    # The requester's device: Ed25519 signing key; the filled secret is bound to it.
    device_key: bytes
    # The Ed25519 access key the filled secret gets (docs/protocol/access.md).
    access_key: bytes
    created_at: int
    expires_at: int
    # How long the filled secret lives, from the moment it is filled.
    secret_lifetime: int


@dataclasses.dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: bytes
    token_hash: bytes
    fill_token_hash: bytes
    device_key: bytes
    access_key: bytes
    created_at: int
    expires_at: int
    secret_lifetime: int
    secret_id: bytes | None
    is_filled: bool
    # Until when the claim of `secret_id` holds (0 when never claimed).
    claimed_until: int = 0

    def claim_lapsed(self, now: int) -> bool:
        """A claim holds the request unfilled, but its lease is over (its node died)."""
        return not self.is_filled and self.secret_id is not None and self.claimed_until <= now

    @property
    def state(self) -> RequestState:
        if self.is_filled:
            return RequestState.FILLED
        return RequestState.OPEN if self.secret_id is None else RequestState.FILLING


class RequestStore(Protocol):
    async def create_request(self, request: NewRequest) -> None:
        """Store a new open request."""
        ...

    async def request_info(self, request_id: bytes, now: int) -> RequestInfo | None:
        """The request's record, or None when unknown or expired."""
        ...

    async def claim_request(self, request_id: bytes, secret_id: bytes, now: int) -> RequestInfo:
        """Atomically take an open request, or one whose claim lapsed unfilled, for the secret
        `secret_id` until `now + CLAIM_LEASE_SECONDS`; RequestTaken when it is unknown,
        expired, filled or claimed under a live lease. Of concurrent claims exactly one
        wins."""
        ...

    async def release_request(self, request_id: bytes, secret_id: bytes) -> None:
        """Open a request again whose upload (for `secret_id`) failed; a no-op otherwise."""
        ...

    async def complete_request(
        self, request_id: bytes, secret_id: bytes, expires_at: int, now: int
    ) -> bool:
        """Mark the request filled by `secret_id` and keep its record until `expires_at`
        (the secret's expiry), so its requester can still ask for it. False (and nothing
        written) when the record no longer holds that claim: expired, or a lapsed claim
        another fill took."""
        ...

    async def cancel_request(self, request_id: bytes, now: int) -> bool:
        """Atomically forget an open request, or one whose claim lapsed unfilled; False (and
        nothing written) when it is unknown, expired, filled or claimed under a live lease.
        Against a concurrent claim exactly one of the two wins."""
        ...


class SecretAndRequestStore(SecretStore, RequestStore, Protocol):
    """What a storage adapter implements: both ports (SQLite and Redis do)."""
