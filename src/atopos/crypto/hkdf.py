"""HKDF-SHA256 (RFC 5869), the one key derivation from key material that Atopos uses.

Every derived key (envelope keys, device keys, the device seal key, the rate-limit
identifier key of a period) comes from `derive_key`, so the hash and its parameters are
spelled once. Argon2id, for passphrases, lives in crypto/kdf.py.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["derive_key"]


def derive_key(ikm: bytes, *, info: bytes, salt: bytes | None = None, length: int = 32) -> bytes:
    """`length` bytes of HKDF-SHA256(ikm, salt, info); no salt means RFC 5869's zero salt."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(bytes(ikm))
