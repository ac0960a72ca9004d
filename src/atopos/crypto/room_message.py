"""Message encryption inside a room (docs/protocol/rooms.md, "Message frames").

The plaintext is `u32(len(body)) || body || zeros` up to the Padmé bucket of its length
(at least 512 bytes, crypto/padding.py), sealed with AES-256-GCM under the sender ratchet's
one-time key and nonce. The AAD binds room, epoch, sender index and counter, so a frame
moved to another room, epoch, sender or position fails to open.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.padding import padded_size
from atopos.crypto.room_ratchet import MessageKey

__all__ = ["MAX_BODY_BYTES", "decrypt_message", "encrypt_message", "message_aad"]

MAX_BODY_BYTES = 16384
_AAD_LABEL = b"atopos/room/v1/message\x00"
_LENGTH = struct.Struct(">I")


def message_aad(room_id: bytes, epoch: int, sender: int, counter: int) -> bytes:
    """label || room_id || u64(epoch) || u32(sender) || u64(counter)."""
    return _AAD_LABEL + bytes(room_id) + struct.pack(">QIQ", epoch, sender, counter)


def encrypt_message(key: MessageKey, aad: bytes, body: bytes) -> bytes:
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"a message body is at most {MAX_BODY_BYTES} bytes")
    framed = _LENGTH.pack(len(body)) + bytes(body)
    padded = framed + bytes(padded_size(len(framed)) - len(framed))
    return AESGCM(key.key).encrypt(key.nonce, padded, aad)


def decrypt_message(key: MessageKey, aad: bytes, ciphertext: bytes) -> bytes:
    """The body; DecryptionFailed for tampering, a wrong key or context, or bad padding."""
    try:
        padded = AESGCM(key.key).decrypt(key.nonce, bytes(ciphertext), aad)
    except InvalidTag:
        raise DecryptionFailed from None
    if len(padded) < _LENGTH.size:
        raise DecryptionFailed
    (length,) = _LENGTH.unpack_from(padded)
    end = _LENGTH.size + length
    if length > MAX_BODY_BYTES or end > len(padded) or len(padded) != padded_size(end):
        raise DecryptionFailed
    if any(padded[end:]):
        raise DecryptionFailed
    return padded[_LENGTH.size : end]
