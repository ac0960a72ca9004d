"""Raw X25519 (libsodium, for Sphinx blinding) against pyca's X25519: the same bytes, and the
same refusals, on ordinary, non-canonical and small-order u-coordinates."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from atopos.crypto import sphinx
from atopos.crypto.sphinx_x25519 import x25519

_P = 2**255 - 19
# The u-coordinates of Curve25519's points of order 1, 2, 4 and 8 (RFC 7748 section 5 and
# the well-known list libsodium and others blacklist).
_SMALL_ORDER = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
]


def _encodings(u: int) -> list[bytes]:
    """u as 32 bytes, with the ignored top bit set, and u + p when that still fits 255 bits."""
    out = [u.to_bytes(32, "little"), (u | 2**255).to_bytes(32, "little")]
    if u + _P < 2**255:
        out.append((u + _P).to_bytes(32, "little"))
    return out


def _pyca(scalar: bytes, u: bytes) -> bytes | None:
    try:
        return X25519PrivateKey.from_private_bytes(scalar).exchange(
            X25519PublicKey.from_public_bytes(u)
        )
    except ValueError:
        return None


def _raw(scalar: bytes, u: bytes) -> bytes | None:
    try:
        return x25519(scalar, u)
    except ValueError:
        return None


def test_small_order_points_are_refused_by_both() -> None:
    for u in _SMALL_ORDER:
        for encoded in _encodings(u):
            for _ in range(4):
                scalar = os.urandom(32)
                assert _pyca(scalar, encoded) is None
                assert _raw(scalar, encoded) is None


def test_same_bytes_on_random_and_non_canonical_points() -> None:
    for _ in range(300):
        scalar = os.urandom(32)
        public = X25519PrivateKey.generate().public_key().public_bytes_raw()
        u = int.from_bytes(public, "little")
        # Random 32 bytes: points of the curve or its twist, nearly all with a small-order
        # part (which the clamped scalar, a multiple of 8, removes in both).
        for encoded in [*_encodings(u), os.urandom(32)]:
            expected = _pyca(scalar, encoded)
            assert expected is not None
            assert _raw(scalar, encoded) == expected


def test_wrong_lengths_are_refused_before_libsodium() -> None:
    u = X25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(ValueError, match="32-byte"):
        x25519(os.urandom(31), u)
    with pytest.raises(ValueError, match="32-byte"):
        x25519(os.urandom(32), u + b"\x00")


def test_a_hop_drops_a_small_order_alpha_the_same_way() -> None:
    """A packet whose alpha is any encoding of a small-order point is refused as before."""
    key = X25519PrivateKey.generate()
    route = [sphinx.Hop(key.public_key().public_bytes_raw(), bytes(32), 0)] * 2
    packet = sphinx.create_forward_packet(route, bytes(32), bytes(sphinx.MESSAGE_BYTES), os.urandom)
    for u in _SMALL_ORDER:
        for encoded in _encodings(u):
            with pytest.raises(sphinx.InvalidPacket):
                sphinx.process_packet(key, encoded + packet[32:])
