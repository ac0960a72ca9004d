"""Lioness (Anderson and Biham, 1996), the wide-block cipher of a Sphinx payload.

Built from AES-256-CTR as the stream cipher S and HMAC-SHA256 as the keyed hash H, with a
32-byte left part L and the rest R (docs/protocol/sphinx.md, "Payload cipher"):
R ^= S(L ^ K1); L ^= H(K2, R); R ^= S(L ^ K3); L ^= H(K4, R). Any change to the block
scrambles all of it, which is what lets a zero prefix authenticate a Sphinx payload.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["LIONESS_KEY_BYTES", "lioness_decrypt", "lioness_encrypt"]

# Four 32-byte round keys.
LIONESS_KEY_BYTES = 128
_SIDE = 32
# CTR from a zero counter: each round key (L ^ K) encrypts one stream.
_CTR_FROM_ZERO = modes.CTR(bytes(16))


def _stream_xor(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), _CTR_FROM_ZERO).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _xor32(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(_SIDE, "big")


def _split(key: bytes, block: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    if len(key) != LIONESS_KEY_BYTES or len(block) <= _SIDE:
        raise ValueError("Lioness needs a 128-byte key and a block longer than 32 bytes")
    return key[:32], key[32:64], key[64:96], key[96:], block[:_SIDE], block[_SIDE:]


def lioness_encrypt(key: bytes, block: bytes) -> bytes:
    """The block enciphered under the 128-byte `key`; same length as `block`."""
    k1, k2, k3, k4, left, right = _split(key, block)
    right = _stream_xor(_xor32(left, k1), right)
    left = _xor32(left, hmac.digest(k2, right, hashlib.sha256))
    right = _stream_xor(_xor32(left, k3), right)
    left = _xor32(left, hmac.digest(k4, right, hashlib.sha256))
    return left + right


def lioness_decrypt(key: bytes, block: bytes) -> bytes:
    """The inverse of `lioness_encrypt` under the same key."""
    k1, k2, k3, k4, left, right = _split(key, block)
    left = _xor32(left, hmac.digest(k4, right, hashlib.sha256))
    right = _stream_xor(_xor32(left, k3), right)
    left = _xor32(left, hmac.digest(k2, right, hashlib.sha256))
    right = _stream_xor(_xor32(left, k1), right)
    return left + right
