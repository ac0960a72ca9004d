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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.device import is_valid_x25519_public_key
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.hkdf import derive_key

__all__ = ["SEALED_SECRET_BYTES", "SealOpener", "open_secret", "seal_aad", "seal_secret"]

SEALED_SECRET_BYTES = 32 + 16
_SEAL_INFO = b"atopos/room/v1/seal"
_SEAL_AAD_LABEL = b"atopos/room/v1/seal\x00"
_NONCE = bytes(12)


class SealOpener(Protocol):
    """What opening a sealed secret needs: the recipient's X25519 public key and exchange."""

    @property
    def seal_key(self) -> bytes: ...

    def shared_secret(self, ephemeral_public: bytes) -> bytes: ...


def seal_aad(room_id: bytes, epoch: int, recipient: int, roster_hash: bytes) -> bytes:
    """label || room_id || u64(epoch) || u32(recipient index) || roster_hash."""
    return _SEAL_AAD_LABEL + bytes(room_id) + struct.pack(">QI", epoch, recipient) + roster_hash


def _key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return derive_key(shared, info=_SEAL_INFO, salt=ephemeral_public + recipient_public)


def seal_secret(
    recipient_public: bytes, secret: bytes, ephemeral_private: bytes, aad: bytes
) -> tuple[bytes, bytes]:
    """(ephemeral_public, sealed) for a 32-byte secret; ValueError for an unusable key."""
    if len(secret) != 32:
        raise ValueError("the sealed secret is 32 bytes")
    if not is_valid_x25519_public_key(recipient_public):
        raise ValueError("the recipient's X25519 key is not usable")
    ephemeral = X25519PrivateKey.from_private_bytes(bytes(ephemeral_private))
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bytes(recipient_public)))
    key = _key(shared, ephemeral_public, bytes(recipient_public))
    return ephemeral_public, AESGCM(key).encrypt(_NONCE, bytes(secret), aad)


def open_secret(opener: SealOpener, ephemeral_public: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The secret sealed to `opener`; DecryptionFailed for anything else."""
    if len(sealed) != SEALED_SECRET_BYTES:
        raise DecryptionFailed
    try:
        shared = opener.shared_secret(bytes(ephemeral_public))
    except ValueError:
        raise DecryptionFailed from None
    if not any(shared):
        raise DecryptionFailed
    key = _key(shared, bytes(ephemeral_public), bytes(opener.seal_key))
    try:
        return AESGCM(key).decrypt(_NONCE, bytes(sealed), aad)
    except InvalidTag:
        raise DecryptionFailed from None
