"""SHA-256 proof of work over a server challenge (wire format fixed in DESIGN.md).

Find an integer nonce, 0 <= nonce < 2**64, such that
SHA-256(utf8(challenge) || b":" || ascii(decimal nonce)) has at least `bits` leading zero bits.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_NONCE", "leading_zero_bits", "solve", "verify"]

MAX_NONCE = 2**64 - 1
_sha256 = hashlib.sha256


def verify(challenge: bytes, nonce: int, bits: int) -> bool:
    """True when `nonce` solves `challenge` (already UTF-8 encoded) at `bits` difficulty."""
    if not 0 <= nonce <= MAX_NONCE:
        return False
    if bits <= 0:
        return True
    digest = _sha256(b"%s:%d" % (challenge, nonce)).digest()
    return (
        int.from_bytes(digest[:8], "big") >> (64 - bits) == 0
        if bits <= 64
        else (leading_zero_bits(digest) >= bits)
    )


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solve(challenge: bytes, bits: int, start: int = 0) -> int:
    """Smallest nonce >= start that solves the challenge. Expected work: 2**bits hashes."""
    if bits <= 0:
        return start
    prefix = _sha256(challenge + b":")
    shift = 64 - bits if bits <= 64 else 0
    nonce = start
    while nonce <= MAX_NONCE:
        h = prefix.copy()
        h.update(b"%d" % nonce)
        digest = h.digest()
        if bits <= 64:
            if int.from_bytes(digest[:8], "big") >> shift == 0:
                return nonce
        elif leading_zero_bits(digest) >= bits:
            return nonce
        nonce += 1
    raise ValueError("no nonce below 2**64 solves this challenge")
