"""What a mixnet client puts in the 2048-byte Sphinx message (docs/protocol/mixnet.md,
"Client messages"), and the address it sends to.

The message is sealed to the recipient's mailbox key (crypto/x25519_seal.py), so the
recipient's gateway, which sees the delivered message, cannot tell a loop from data nor read
either: `ephemeral public key (32) || AES-256-GCM(kind (1) || length (2) || data || zero pad)`,
2048 bytes in all. The AAD is the mailbox id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.sphinx import ADDRESS_BYTES, MESSAGE_BYTES
from atopos.crypto.x25519_seal import open_sealed, seal_to

__all__ = [
    "MAX_DATA_BYTES",
    "MessageKind",
    "MixAddress",
    "open_message",
    "parse_mix_address",
    "seal_message",
]

_KEY_BYTES = 32
_GCM_TAG_BYTES = 16
_HEADER_BYTES = 3
_SEALED_PLAIN_BYTES = MESSAGE_BYTES - _KEY_BYTES - _GCM_TAG_BYTES
MAX_DATA_BYTES = _SEALED_PLAIN_BYTES - _HEADER_BYTES
_INFO = b"atopos mix message v1"


class MessageKind(IntEnum):
    DATA = 1
    LOOP = 2


@dataclass(frozen=True, slots=True)
class MixAddress:
    """Where a client's mail goes: its gateway, its mailbox id, its mailbox public key."""

    gateway_id: bytes
    mailbox_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if (len(self.gateway_id), len(self.mailbox_id), len(self.public_key)) != (32, 32, 32):
            raise ValueError("a mix address is three 32-byte values")

    def __str__(self) -> str:
        parts = (self.gateway_id, self.mailbox_id, self.public_key)
        return ".".join(b64url_encode(part) for part in parts)


def parse_mix_address(text: str) -> MixAddress:
    """`gateway.mailbox.key`, three unpadded base64url values; ValueError otherwise."""
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError("a mix address is gateway.mailbox.key")
    gateway, mailbox, key = (b64url_decode(part) for part in parts)
    return MixAddress(gateway, mailbox, key)


def seal_message(
    recipient: MixAddress, kind: MessageKind, data: bytes, random_bytes: RandomBytes
) -> bytes:
    """The MESSAGE_BYTES Sphinx message carrying `data` (at most MAX_DATA_BYTES)."""
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(f"a mix message carries at most {MAX_DATA_BYTES} bytes")
    plain = bytes([kind]) + len(data).to_bytes(2, "big") + data
    plain += bytes(_SEALED_PLAIN_BYTES - len(plain))
    ephemeral_public, sealed = seal_to(
        recipient.public_key,
        plain,
        draw(random_bytes, _KEY_BYTES),
        info=_INFO,
        aad=recipient.mailbox_id,
    )
    return ephemeral_public + sealed


def open_message(
    exchange: Callable[[bytes], bytes], address: MixAddress, message: bytes
) -> tuple[MessageKind, bytes]:
    """(kind, data) of a message sealed to `address`; DecryptionFailed for anything else."""
    if len(message) != MESSAGE_BYTES or len(address.mailbox_id) != ADDRESS_BYTES:
        raise DecryptionFailed
    plain = open_sealed(
        exchange,
        address.public_key,
        message[:_KEY_BYTES],
        message[_KEY_BYTES:],
        info=_INFO,
        aad=address.mailbox_id,
    )
    length = int.from_bytes(plain[1:3], "big")
    if plain[0] not in (MessageKind.DATA, MessageKind.LOOP) or length > MAX_DATA_BYTES:
        raise DecryptionFailed
    if any(plain[_HEADER_BYTES + length :]):
        raise DecryptionFailed
    return MessageKind(plain[0]), plain[_HEADER_BYTES : _HEADER_BYTES + length]
