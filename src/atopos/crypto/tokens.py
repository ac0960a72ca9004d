"""Stateless signed challenges and single-use tickets (docs/protocol/access.md).

Both are `base64url(payload || tag)` where tag = HMAC-SHA256(key, payload)[:16] and the
payload starts with a type byte, so a challenge can never be presented as a ticket.
The keys live in the server's RAM (or a key file shared by the nodes); a key id byte lets
the previous key verify tokens for one lifetime after a rotation.

A ticket's id is derived from the challenge it was minted from, so one solved challenge
yields at most one usable ticket even though challenges themselves are stateless.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import hashlib
import hmac
import struct

from atopos.crypto.base64url import b64url_encode
from atopos.crypto.errors import CryptoError
from atopos.crypto.sizes import CHALLENGE_SALT_BYTES, NODE_KEY_BYTES, SECRET_ID_BYTES

__all__ = [
    "KEY_BYTES",
    "SECRET_ID_BYTES",
    "Challenge",
    "InvalidToken",
    "Purpose",
    "Ticket",
    "TokenKeys",
    "bound_id_for",
    "ticket_id_for",
]

KEY_BYTES = NODE_KEY_BYTES
_TAG_BYTES = 16
_TYPE_CHALLENGE = 1
_TYPE_TICKET = 2
# type, key id, secret id, expires_at, bits, salt
_CHALLENGE = struct.Struct(f">BB{SECRET_ID_BYTES}sQB{CHALLENGE_SALT_BYTES}s")
# type, key id, secret id, ticket id, expires_at, remember_until
_TICKET = struct.Struct(f">BB{SECRET_ID_BYTES}s16sQQ")
_CHALLENGE_CHARS = ((_CHALLENGE.size + _TAG_BYTES) * 4 + 2) // 3  # unpadded base64 length
_TICKET_CHARS = ((_TICKET.size + _TAG_BYTES) * 4 + 2) // 3
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _canonical_last_chars(token_bytes: int) -> frozenset[str]:
    """Final characters whose unused low bits are zero, so each value has one spelling."""
    unused_bits = (-token_bytes * 8) % 6
    return frozenset(c for i, c in enumerate(_ALPHABET) if i % (1 << unused_bits) == 0)


_CHALLENGE_LAST = _canonical_last_chars(_CHALLENGE.size + _TAG_BYTES)
_TICKET_LAST = _canonical_last_chars(_TICKET.size + _TAG_BYTES)
_compare = hmac.compare_digest


class InvalidToken(CryptoError):
    """A challenge or ticket that is malformed, forged, expired or for another secret."""


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    secret_id: bytes
    expires_at: int
    bits: int


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    secret_id: bytes
    ticket_id: bytes
    expires_at: int
    # Until when the store must remember this ticket id once redeemed: the last moment any
    # ticket minted from the same challenge can still be valid.
    remember_until: int


class Purpose(enum.Enum):
    """What a challenge's proof of work pays for; the challenge is bound to it and one id."""

    SECRET_ACCESS = "secret-access"  # noqa: S105 (a label, not a password): a ticket to view one secret (bound to the secret id)
    ROOM_CREATION = "room-creation"  # creating one room (bound to the room id)


def bound_id_for(purpose: Purpose, subject: bytes) -> bytes:
    """The 16 bytes a challenge carries in its id field. For a secret it is the secret id
    itself (the version 1 format, unchanged); for any other purpose it is a hash of the
    purpose and the subject, so a challenge for one purpose never passes for another."""
    if purpose is Purpose.SECRET_ACCESS:
        return subject
    label = b"atopos/challenge-purpose\x00" + purpose.value.encode("ascii") + b"\x00"
    return hashlib.sha256(label + subject).digest()[:SECRET_ID_BYTES]


def ticket_id_for(challenge: str) -> bytes:
    return hashlib.sha256(b"atopos/ticket-id\x00" + challenge.encode("ascii")).digest()[:16]


def _decode(token: str, expected_chars: int, last_chars: frozenset[str]) -> bytes:
    # Fixed length, strict alphabet, canonical last character; then the MAC decides.
    if len(token) != expected_chars or token[-1] not in last_chars:
        raise InvalidToken
    try:
        raw = token.encode("ascii").translate(_FROM_URLSAFE)
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
    except (UnicodeEncodeError, ValueError) as exc:
        raise InvalidToken from exc


class TokenKeys:
    """Signs with the current key; verifies with the current or the previous one."""

    def __init__(self, current: bytes, previous: bytes | None = None) -> None:
        if len(current) != KEY_BYTES or (previous is not None and len(previous) != KEY_BYTES):
            raise ValueError("token keys are 32 bytes")
        self._current_id = _key_id(current)
        # HMAC-SHA256 already keyed, copied per token: the key schedule is paid once here,
        # not on every token (a third of the time of verifying one).
        self._keyed = {self._current_id: hmac.new(current, digestmod=hashlib.sha256)}
        if previous is not None and _key_id(previous) != self._current_id:
            self._keyed[_key_id(previous)] = hmac.new(previous, digestmod=hashlib.sha256)

    def _sign(self, payload: bytes) -> str:
        return b64url_encode(payload + _tag(self._keyed[self._current_id], payload))

    def _open(self, token: str, expected_chars: int, last: frozenset[str], size: int) -> bytes:
        raw = _decode(token, expected_chars, last)
        payload, tag = raw[:size], raw[size:]
        keyed = self._keyed.get(payload[1])
        if keyed is None or not _compare(_tag(keyed, payload), tag):
            raise InvalidToken
        return payload

    def issue_challenge(self, secret_id: bytes, expires_at: int, bits: int, salt: bytes) -> str:
        """A challenge bound to one secret; `salt` (8 random bytes) makes each one unique."""
        payload = _CHALLENGE.pack(
            _TYPE_CHALLENGE, self._current_id, secret_id, expires_at, bits, salt
        )
        return self._sign(payload)

    def open_challenge(self, token: str, secret_id: bytes, now: int) -> Challenge:
        payload = self._open(token, _CHALLENGE_CHARS, _CHALLENGE_LAST, _CHALLENGE.size)
        kind, _, bound_id, expires_at, bits, _salt = _CHALLENGE.unpack(payload)
        if kind != _TYPE_CHALLENGE or not _compare(bound_id, secret_id) or expires_at <= now:
            raise InvalidToken
        return Challenge(bound_id, expires_at, bits)

    def issue_ticket(
        self, secret_id: bytes, ticket_id: bytes, expires_at: int, remember_until: int
    ) -> str:
        payload = _TICKET.pack(
            _TYPE_TICKET, self._current_id, secret_id, ticket_id, expires_at, remember_until
        )
        return self._sign(payload)

    def open_ticket(self, token: str, secret_id: bytes, now: int) -> Ticket:
        payload = self._open(token, _TICKET_CHARS, _TICKET_LAST, _TICKET.size)
        kind, _, bound_id, ticket_id, expires_at, remember_until = _TICKET.unpack(payload)
        if kind != _TYPE_TICKET or not _compare(bound_id, secret_id) or expires_at <= now:
            raise InvalidToken
        return Ticket(bound_id, ticket_id, expires_at, remember_until)


def _tag(keyed: hmac.HMAC, payload: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(payload)
    return mac.digest()[:_TAG_BYTES]


def _key_id(key: bytes) -> int:
    # Public and derived from the key, so every node holding a key file agrees on it.
    return hashlib.sha256(b"atopos/key-id\x00" + key).digest()[0]
