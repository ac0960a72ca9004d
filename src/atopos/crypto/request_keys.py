"""The keys of a secret request (docs/protocol/requests.md, "Keys").

A requester draws one 32-byte *request key*. It is the link key of the secret that will
fill the request, so the requester can later open it (with the device it is sealed to); and
a *fill token* is derived from it one-way, so that only someone who holds the request link
(not an id seen in a path) can fill the request. The server keeps only a hash of the token.
"""

from __future__ import annotations

import hashlib

from atopos.crypto.hkdf import derive_key
from atopos.crypto.sizes import LINK_KEY_BYTES

__all__ = [
    "FILL_TOKEN_BYTES",
    "FILL_TOKEN_HASH_LABEL",
    "FILL_TOKEN_INFO",
    "fill_token_hash",
    "fill_token_of",
]

FILL_TOKEN_INFO = b"atopos/request-fill/v1"
FILL_TOKEN_HASH_LABEL = b"atopos/fill-token\x00"
FILL_TOKEN_BYTES = 32


def fill_token_of(request_key: bytes) -> bytes:
    """fill_token = HKDF-SHA256(request_key, empty salt, "atopos/request-fill/v1", 32)."""
    if len(request_key) != LINK_KEY_BYTES:
        raise ValueError(f"a request key is {LINK_KEY_BYTES} bytes")
    return derive_key(request_key, info=FILL_TOKEN_INFO, length=FILL_TOKEN_BYTES)


def fill_token_hash(fill_token: bytes) -> bytes:
    """What the server stores: SHA-256("atopos/fill-token" || 0x00 || fill_token)."""
    return hashlib.sha256(FILL_TOKEN_HASH_LABEL + bytes(fill_token)).digest()
