"""Sealing an epoch secret to one member (docs/protocol/rooms.md, "Sealing").

An HPKE-like base mode built from what WebCrypto has: a fresh X25519 ephemeral key per
recipient, k = HKDF-SHA256(X25519(ephemeral, recipient), salt = ephemeral_pub ||
recipient_pub, info "atopos/room/v1/seal"), then AES-256-GCM(k, 12 zero bytes, secret, aad).
The key encrypts exactly one value (it depends on a fresh ephemeral key), so the constant
nonce is safe. The AAD binds room, epoch, recipient index and the new roster's hash.
"""

from __future__ import annotations

import struct
from typing import Protocol

from atopos.crypto.device import is_valid_x25519_public_key
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.x25519_seal import open_sealed, seal_to

__all__ = ["SEALED_SECRET_BYTES", "SealOpener", "open_secret", "seal_aad", "seal_secret"]

SEALED_SECRET_BYTES = 32 + 16
_SEAL_INFO = b"atopos/room/v1/seal"
_SEAL_AAD_LABEL = b"atopos/room/v1/seal\x00"


class SealOpener(Protocol):
    """What opening a sealed secret needs: the recipient's X25519 public key and exchange."""

    @property
    def seal_key(self) -> bytes: ...

    def shared_secret(self, ephemeral_public: bytes) -> bytes: ...


def seal_aad(room_id: bytes, epoch: int, recipient: int, roster_hash: bytes) -> bytes:
    """label || room_id || u64(epoch) || u32(recipient index) || roster_hash."""
    return _SEAL_AAD_LABEL + bytes(room_id) + struct.pack(">QI", epoch, recipient) + roster_hash


def seal_secret(
    recipient_public: bytes, secret: bytes, ephemeral_private: bytes, aad: bytes
) -> tuple[bytes, bytes]:
    """(ephemeral_public, sealed) for a 32-byte secret; ValueError for an unusable key."""
    if len(secret) != 32:
        raise ValueError("the sealed secret is 32 bytes")
    if not is_valid_x25519_public_key(recipient_public):
        raise ValueError("the recipient's X25519 key is not usable")
    return seal_to(recipient_public, secret, ephemeral_private, info=_SEAL_INFO, aad=aad)


def open_secret(opener: SealOpener, ephemeral_public: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The secret sealed to `opener`; DecryptionFailed for anything else."""
    if len(sealed) != SEALED_SECRET_BYTES:
        raise DecryptionFailed
    return open_sealed(
        opener.shared_secret, opener.seal_key, ephemeral_public, sealed, info=_SEAL_INFO, aad=aad
    )
