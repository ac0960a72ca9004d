"""Strict wire schemas of secret requests (docs/protocol/requests.md); msgspec makes
unknown fields and wrong types a 422."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["NewRequestBody", "RequestCreated", "RequestFilled", "RequestStatus"]

# Unpadded base64url of 32 bytes is exactly 43 characters; the API checks the value.
_Key = Annotated[str, msgspec.Meta(min_length=43, max_length=43)]


class NewRequestBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # The requester's device: its Ed25519 signing key (the filled secret is bound to it).
    device_key: _Key
    # The Ed25519 access key of the request key (docs/protocol/access.md).
    access_key: _Key
    # HKDF of the request key (crypto/request_keys.py); the server keeps only its hash.
    fill_token: _Key
    # Seconds the request stays open, and the filled secret lives from its fill; the
    # server's default expiry when absent.
    expires_in: int | None = None


class RequestCreated(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    request_token: str
    expires_at: int


class RequestStatus(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    state: Literal["open", "filling", "filled"]
    expires_at: int
    created_at: int
    # The filled secret's id (its share link is /s/{secret_id}#{request key}); null until
    # the request is filled.
    secret_id: str | None


class RequestFilled(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    expires_at: int
