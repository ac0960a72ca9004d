"""Sealing a short secret to an X25519 public key: the one construction behind the device
seal (docs/protocol/device.md) and the room epoch seal (docs/protocol/rooms.md).

An HPKE-like base mode built from what WebCrypto has: a fresh X25519 ephemeral key,
k = HKDF-SHA256(X25519(ephemeral, recipient), salt = ephemeral_pub || recipient_pub, info),
then AES-256-GCM(k, 12 zero bytes, secret, aad). Each key seals exactly one value (it depends
on a fresh ephemeral key), so the constant nonce is safe; `info` separates the uses.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.hkdf import derive_key

__all__ = ["open_sealed", "seal_to"]

_NONCE = bytes(12)


def _key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes, info: bytes) -> bytes:
    return derive_key(shared, info=info, salt=ephemeral_public + recipient_public)


def seal_to(
    recipient_public: bytes, secret: bytes, ephemeral_private: bytes, *, info: bytes, aad: bytes
) -> tuple[bytes, bytes]:
    """(ephemeral_public, sealed). The caller has checked the recipient key is usable."""
    ephemeral = X25519PrivateKey.from_private_bytes(bytes(ephemeral_private))
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bytes(recipient_public)))
    key = _key(shared, ephemeral_public, bytes(recipient_public), info)
    return ephemeral_public, AESGCM(key).encrypt(_NONCE, bytes(secret), aad)


def open_sealed(
    exchange: Callable[[bytes], bytes],
    recipient_public: bytes,
    ephemeral_public: bytes,
    sealed: bytes,
    *,
    info: bytes,
    aad: bytes,
) -> bytes:
    """The sealed secret, given the recipient's `exchange` (X25519 with its private key);
    DecryptionFailed for another recipient, a changed byte or a small-order ephemeral key."""
    try:
        shared = exchange(bytes(ephemeral_public))
    except ValueError:
        raise DecryptionFailed from None
    if not any(shared):
        raise DecryptionFailed
    key = _key(shared, bytes(ephemeral_public), bytes(recipient_public), info)
    try:
        return AESGCM(key).decrypt(_NONCE, bytes(sealed), aad)
    except InvalidTag:
        raise DecryptionFailed from None
