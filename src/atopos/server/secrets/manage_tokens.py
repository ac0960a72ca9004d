"""The one hash a server keeps of a manage token (a secret's, which is also a request's
requester token): SHA-256("atopos/manage-token" || 0x00 || token)."""

from __future__ import annotations

import hashlib

__all__ = ["hash_manage_token"]


def hash_manage_token(token: bytes) -> bytes:
    return hashlib.sha256(b"atopos/manage-token\x00" + token).digest()
