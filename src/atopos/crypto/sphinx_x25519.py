"""X25519 on raw bytes for Sphinx blinding: RFC 7748's function, nothing more.

A Sphinx hop multiplies alpha by a scalar it has only just derived from the packet. pyca
only offers X25519 through a private-key object whose constructor also computes the public
key, a second (wasted) scalar multiplication; libsodium's `crypto_scalarmult` (through
PyNaCl, PyCA's binding) computes X25519(k, u) alone and gives the same bytes.
docs/protocol/sphinx.md, "Notation and primitives"; docs/performance.md, "Mixnet packets".
"""

from __future__ import annotations

from nacl.bindings import crypto_scalarmult
from nacl.exceptions import RuntimeError as SodiumError

__all__ = ["X25519_BYTES", "x25519"]

X25519_BYTES = 32


def x25519(scalar: bytes, u_coordinate: bytes) -> bytes:
    """RFC 7748's X25519(scalar, u): `scalar` is clamped as the RFC says, the result is 32
    bytes. ValueError for a small-order `u_coordinate` (libsodium refuses an all-zero
    result, as pyca's `exchange` does) and for inputs that are not 32 bytes each."""
    if len(scalar) != X25519_BYTES or len(u_coordinate) != X25519_BYTES:
        # libsodium reads 32 bytes from each pointer whatever the length: never call it so.
        raise ValueError("X25519 takes a 32-byte scalar and a 32-byte u-coordinate")
    try:
        return crypto_scalarmult(bytes(scalar), bytes(u_coordinate))
    except SodiumError:
        raise ValueError("X25519 of a small-order point") from None
