"""Frames on mixnet links (docs/protocol/mixnet.md, "Link frames").

Every frame on every link, node to node and client to gateway, is FRAME_BYTES long:
a kind byte and a body of exactly one Sphinx packet's size, zero-padded. So an observer of a
link sees a count of equal frames and nothing else in their sizes. Decoding is strict: an
unknown kind or non-zero padding refuses the frame (`InvalidFrame`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from atopos.crypto.errors import CryptoError
from atopos.crypto.sphinx import ADDRESS_BYTES, PACKET_BYTES, PAYLOAD_BYTES

__all__ = [
    "FRAME_BYTES",
    "MAIL_CONTENT_BYTES",
    "FrameKind",
    "InvalidFrame",
    "Mail",
    "MailKind",
    "MailboxOpen",
    "PacketFrame",
    "decode_frame",
    "encode_frame",
]

FRAME_BYTES = 1 + PACKET_BYTES
# A delivered message (2048) or a reply payload (2064) fits; shorter content is zero-padded.
MAIL_CONTENT_BYTES = PAYLOAD_BYTES
_LENGTH_BYTES = 2


class InvalidFrame(CryptoError):
    """A link frame of the wrong size, an unknown kind, or with non-zero padding."""


class FrameKind(IntEnum):
    PACKET = 1
    MAILBOX_OPEN = 2
    MAIL = 3


class MailKind(IntEnum):
    MESSAGE = 1
    REPLY = 2


@dataclass(frozen=True, slots=True)
class PacketFrame:
    """A Sphinx packet for the receiving node."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class MailboxOpen:
    """Client to its gateway: deliver this mailbox's mail on this connection."""

    mailbox_id: bytes


@dataclass(frozen=True, slots=True)
class Mail:
    """Gateway to client: a message delivered to `address` (a mailbox or a SURB id)."""

    kind: MailKind
    address: bytes
    content: bytes


Frame = PacketFrame | MailboxOpen | Mail


def _padded(kind: FrameKind, body: bytes) -> bytes:
    return bytes([kind]) + body + bytes(PACKET_BYTES - len(body))


def encode_frame(frame: Frame) -> bytes:
    """The FRAME_BYTES bytes of `frame`."""
    if isinstance(frame, PacketFrame):
        if len(frame.packet) != PACKET_BYTES:
            raise ValueError("a packet frame holds one Sphinx packet")
        return bytes([FrameKind.PACKET]) + frame.packet
    if isinstance(frame, MailboxOpen):
        if len(frame.mailbox_id) != ADDRESS_BYTES:
            raise ValueError("a mailbox id is 32 bytes")
        return _padded(FrameKind.MAILBOX_OPEN, frame.mailbox_id)
    if len(frame.address) != ADDRESS_BYTES or len(frame.content) > MAIL_CONTENT_BYTES:
        raise ValueError("mail has a 32-byte address and at most 2064 bytes of content")
    length = len(frame.content).to_bytes(_LENGTH_BYTES, "big")
    return _padded(FrameKind.MAIL, bytes([frame.kind]) + frame.address + length + frame.content)


def _zero(data: bytes) -> None:
    if data.count(0) != len(data):
        raise InvalidFrame


def decode_frame(data: bytes) -> Frame:
    """The frame in exactly FRAME_BYTES bytes, or InvalidFrame."""
    if len(data) != FRAME_BYTES:
        raise InvalidFrame
    kind, body = data[0], bytes(data[1:])
    if kind == FrameKind.PACKET:
        return PacketFrame(body)
    if kind == FrameKind.MAILBOX_OPEN:
        _zero(body[ADDRESS_BYTES:])
        return MailboxOpen(body[:ADDRESS_BYTES])
    if kind == FrameKind.MAIL:
        if body[0] not in (MailKind.MESSAGE, MailKind.REPLY):
            raise InvalidFrame
        start = 1 + ADDRESS_BYTES + _LENGTH_BYTES
        length = int.from_bytes(body[1 + ADDRESS_BYTES : start], "big")
        if length > MAIL_CONTENT_BYTES:
            raise InvalidFrame
        _zero(body[start + length :])
        return Mail(MailKind(body[0]), body[1 : 1 + ADDRESS_BYTES], body[start : start + length])
    raise InvalidFrame
