"""The safety code members compare out of band (docs/protocol/rooms.md, section 9).

h = SHA-512("atopos/room/v1/safety" || 0x00 || room_id || membership hash); for i in 0..11 the
big-endian 40-bit integer h[5i .. 5i+5] modulo 100000 is one group of 5 digits; the code is the
12 groups joined by single spaces (60 digits). The membership hash chains every commit that
changed who is in the room and the identity keys of the resulting roster, so two members see
the same code exactly when they agree on the room's membership history; self-updates do not
change it. 60 digits (about 199 bits) because a relay holding the link may search both sides
for a collision (section 9): a short code falls to a birthday search.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "SAFETY_CODE_DIGITS",
    "SAFETY_CODE_GROUPS",
    "SAFETY_CODE_GROUPS_PER_LINE",
    "safety_code",
    "safety_code_lines",
]

SAFETY_CODE_GROUPS = 12
_GROUP_DIGITS = 5
_GROUP_BYTES = 5  # 40 bits reduced mod 10^5: each group's relative bias is below 10^-7
SAFETY_CODE_DIGITS = SAFETY_CODE_GROUPS * _GROUP_DIGITS
SAFETY_CODE_GROUPS_PER_LINE = 4
_LABEL = b"atopos/room/v1/safety\x00"


def safety_code(room_id: bytes, membership: bytes) -> str:
    """The canonical code: 12 groups of 5 digits joined by single spaces."""
    digest = hashlib.sha512(_LABEL + bytes(room_id) + bytes(membership)).digest()
    groups = []
    for index in range(SAFETY_CODE_GROUPS):
        chunk = digest[_GROUP_BYTES * index : _GROUP_BYTES * (index + 1)]
        groups.append(f"{int.from_bytes(chunk, 'big') % 10**_GROUP_DIGITS:0{_GROUP_DIGITS}d}")
    return " ".join(groups)


def safety_code_lines(code: str) -> tuple[str, ...]:
    """`code` as people compare it: three lines of four groups each."""
    groups = code.split()
    step = SAFETY_CODE_GROUPS_PER_LINE
    return tuple(" ".join(groups[i : i + step]) for i in range(0, len(groups), step))
