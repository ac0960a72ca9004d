"""The safety code's format and strength (rooms.md section 9).

A relay holding the link can search both sides for a collision (candidate identity keys on the
real side, free `membership` values on a joiner's forked side), so the code must be long
enough that a birthday search is out of reach: 12 groups of 5 digits, every group from its own
5 bytes of SHA-512. The values themselves are checked against tests/vectors/rooms/safety.json
in test_room_vectors.py."""

from __future__ import annotations

import hashlib
import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from atopos.crypto.room_safety import (
    SAFETY_CODE_DIGITS,
    SAFETY_CODE_GROUPS,
    safety_code,
    safety_code_lines,
)

_FORMAT = re.compile(r"[0-9]{5}( [0-9]{5}){11}")
_ROOM_ID = bytes(range(16))


def _membership(number: int) -> bytes:
    return hashlib.sha256(b"membership %d" % number).digest()


def test_the_code_is_60_digits_in_12_groups_of_5() -> None:
    code = safety_code(_ROOM_ID, _membership(0))
    assert _FORMAT.fullmatch(code), code
    assert (SAFETY_CODE_GROUPS, SAFETY_CODE_DIGITS) == (12, 60)
    assert len(code.replace(" ", "")) == SAFETY_CODE_DIGITS
    # a birthday search needs about sqrt(10^60) = 10^30, some 2^99.7, codes on each side
    assert SAFETY_CODE_DIGITS * math.log2(10) / 2 > 99


def test_every_group_varies_on_its_own() -> None:
    """Each of the 12 positions takes many values: no group is fixed, repeated or derived
    from a short prefix of the hash (the old code had 40 bits in all)."""
    codes = [safety_code(_ROOM_ID, _membership(n)).split(" ") for n in range(200)]
    for position in range(SAFETY_CODE_GROUPS):
        assert len({groups[position] for groups in codes}) > 190
    assert all(len(set(groups)) > 6 for groups in codes)
    # leading zeros are kept: some group somewhere starts with 0
    assert any(group.startswith("0") for groups in codes for group in groups)


@settings(max_examples=200)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_two_memberships_give_two_codes(first: bytes, second: bytes) -> None:
    if first != second:
        assert safety_code(_ROOM_ID, first) != safety_code(_ROOM_ID, second)


def test_the_room_id_is_bound() -> None:
    membership = _membership(1)
    assert safety_code(_ROOM_ID, membership) != safety_code(bytes(16), membership)


def test_lines_are_three_rows_of_four_groups() -> None:
    code = safety_code(_ROOM_ID, _membership(2))
    lines = safety_code_lines(code)
    assert len(lines) == 3
    assert all(re.fullmatch(r"[0-9]{5}( [0-9]{5}){3}", line) for line in lines)
    assert " ".join(lines) == code
