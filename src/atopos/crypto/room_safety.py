"""The safety code members compare out of band (docs/protocol/rooms.md, "Safety code").

code = SHA-256("atopos/room/v1/safety" || 0x00 || room_id || membership hash), its first
8 bytes as a big-endian integer modulo 10^12, written as 12 digits in three groups of four.
The membership hash chains every commit that changed who is in the room and the identity
keys of the resulting roster, so two members see the same code exactly when they agree on
the room's membership history; self-updates do not change it.
"""

from __future__ import annotations

import hashlib

__all__ = ["SAFETY_CODE_DIGITS", "safety_code"]

SAFETY_CODE_DIGITS = 12
_LABEL = b"atopos/room/v1/safety\x00"


def safety_code(room_id: bytes, membership: bytes) -> str:
    digest = hashlib.sha256(_LABEL + bytes(room_id) + bytes(membership)).digest()
    number = int.from_bytes(digest[:8], "big") % 10**SAFETY_CODE_DIGITS
    digits = f"{number:0{SAFETY_CODE_DIGITS}d}"
    return " ".join(digits[i : i + 4] for i in range(0, SAFETY_CODE_DIGITS, 4))
