"""Shamir's secret sharing over GF(2^8) for split links (docs/protocol/links.md, "Split links").

A 32-byte link key becomes `count` shares of which any `threshold` give it back: each key
byte is the constant term of its own random polynomial of degree threshold - 1 over GF(2^8)
(the AES field, x^8 + x^4 + x^3 + x + 1), and share i holds every polynomial at x = i.
Fewer than `threshold` shares are consistent with every possible key, equally likely: they
reveal nothing, whatever the computing power (information-theoretic). The coefficients come
from the caller's `RandomBytes`, never from here.

Every share carries a share-set id (8 random bytes drawn with the coefficients), the
threshold, the count and its index, so that shares of different splits are told apart before
they are combined into a wrong key. Field arithmetic avoids tables indexed by secret bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from atopos.crypto.errors import CryptoError
from atopos.crypto.randomness import RandomBytes, draw

__all__ = [
    "KEY_SHARE_BYTES",
    "MAX_SHARES",
    "MIN_THRESHOLD",
    "SHARE_FORMAT",
    "SHARE_SET_ID_BYTES",
    "InvalidShares",
    "KeyShare",
    "combine_key",
    "shares_missing",
    "split_key",
]

SHARE_FORMAT = 1
SHARE_SET_ID_BYTES = 8
MIN_THRESHOLD = 2
# Ten links is already more channels than people use; a cap keeps parsing and prompts small.
MAX_SHARES = 10
_SECRET_BYTES = 32
# format (1) || set id (8) || threshold (1) || count (1) || index (1) || value (32)
KEY_SHARE_BYTES = 1 + SHARE_SET_ID_BYTES + 3 + _SECRET_BYTES
_REDUCTION = 0x1B  # x^8 = x^4 + x^3 + x + 1 in the AES field


class InvalidShares(CryptoError, ValueError):
    """Shares that cannot be combined: damaged, of different splits, repeated, or too few."""


@dataclasses.dataclass(frozen=True, slots=True)
class KeyShare:
    """One share of a split key: `index` (1..count) of `count`, any `threshold` open it."""

    set_id: bytes
    threshold: int
    count: int
    index: int
    value: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if len(self.set_id) != SHARE_SET_ID_BYTES or len(self.value) != _SECRET_BYTES:
            raise InvalidShares("A share has the wrong size.")
        if not MIN_THRESHOLD <= self.threshold <= self.count <= MAX_SHARES:
            raise InvalidShares(f"A share must be k of n with 2 <= k <= n <= {MAX_SHARES}.")
        if not 1 <= self.index <= self.count:
            raise InvalidShares("A share's index must be between 1 and its count.")

    def to_bytes(self) -> bytes:
        header = bytes([SHARE_FORMAT]) + self.set_id
        return header + bytes([self.threshold, self.count, self.index]) + self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyShare:
        """Parse `to_bytes`' form; InvalidShares for anything else."""
        if len(data) != KEY_SHARE_BYTES or data[0] != SHARE_FORMAT:
            raise InvalidShares("This is not a key share this version understands.")
        end = 1 + SHARE_SET_ID_BYTES
        threshold, count, index = data[end], data[end + 1], data[end + 2]
        return cls(data[1:end], threshold, count, index, data[end + 3 :])


def split_key(
    key: bytes, *, threshold: int, count: int, random_bytes: RandomBytes
) -> list[KeyShare]:
    """`count` shares of the 32-byte `key`, any `threshold` of which give it back.

    Draws the share-set id, then the coefficients of degree 1 to threshold - 1 (32 bytes
    each, in that order): the vectors in tests/vectors/shamir.json replay this order.
    """
    if len(key) != _SECRET_BYTES:
        raise ValueError("only a 32-byte key is split")
    if not MIN_THRESHOLD <= threshold <= count <= MAX_SHARES:
        raise InvalidShares(f"A split must be k of n with 2 <= k <= n <= {MAX_SHARES}.")
    set_id = draw(random_bytes, SHARE_SET_ID_BYTES)
    coefficients = [key] + [draw(random_bytes, _SECRET_BYTES) for _ in range(threshold - 1)]
    return [
        KeyShare(
            set_id, threshold, count, x, bytes(_evaluate(coefficients, x, i) for i in range(32))
        )
        for x in range(1, count + 1)
    ]


def shares_missing(shares: Sequence[KeyShare]) -> int:
    """How many more distinct shares of this (consistent) set are needed: 0 when enough."""
    _check_one_set(shares)
    return max(0, shares[0].threshold - len({share.index for share in shares}))


def combine_key(shares: Sequence[KeyShare]) -> bytes:
    """The key from at least `threshold` distinct shares of one split (Lagrange at x = 0).

    A share whose value was altered gives a wrong key, not an error: the access proof
    (docs/protocol/access.md) then refuses it before any view is spent.
    """
    missing = shares_missing(shares)
    if missing:
        raise InvalidShares(f"{missing} more share(s) are needed.")
    by_index = {share.index: share for share in shares}
    chosen = [by_index[index] for index in sorted(by_index)][: shares[0].threshold]
    xs = [share.index for share in chosen]
    weights = [_lagrange_weight_at_zero(xs, j) for j in range(len(xs))]
    key = bytearray(_SECRET_BYTES)
    for weight, share in zip(weights, chosen, strict=True):
        for i in range(_SECRET_BYTES):
            key[i] ^= _multiply(weight, share.value[i])
    return bytes(key)


def _check_one_set(shares: Sequence[KeyShare]) -> None:
    if not shares:
        raise InvalidShares("No share was given.")
    first = shares[0]
    for share in shares[1:]:
        if (share.set_id, share.threshold, share.count) != (
            first.set_id,
            first.threshold,
            first.count,
        ):
            raise InvalidShares("These shares belong to different splits.")
    seen: dict[int, bytes] = {}
    for share in shares:
        if seen.setdefault(share.index, share.value) != share.value:
            raise InvalidShares("Two shares have the same index but differ.")


def _evaluate(coefficients: Sequence[bytes], x: int, byte: int) -> int:
    """The polynomial of key byte `byte` at `x` (Horner's rule, highest degree first)."""
    result = 0
    for coefficient in reversed(coefficients):
        result = _multiply(result, x) ^ coefficient[byte]
    return result


def _lagrange_weight_at_zero(xs: Sequence[int], j: int) -> int:
    """l_j(0) = prod_{m != j} x_m / (x_m - x_j); subtraction is XOR in GF(2^8)."""
    numerator, denominator = 1, 1
    for m, x in enumerate(xs):
        if m != j:
            numerator = _multiply(numerator, x)
            denominator = _multiply(denominator, x ^ xs[j])
    return _multiply(numerator, _inverse(denominator))


def _multiply(a: int, b: int) -> int:
    """a * b in GF(2^8), the same eight steps whatever the operands."""
    product = 0
    for _ in range(8):
        product ^= -(b & 1) & a
        carry = -(a >> 7) & _REDUCTION
        a = ((a << 1) & 0xFF) ^ carry
        b >>= 1
    return product


def _inverse(a: int) -> int:
    """a^254 = a^-1 for a != 0 (Fermat in GF(2^8))."""
    result, power = 1, a
    for bit in range(8):
        if 254 >> bit & 1:
            result = _multiply(result, power)
        power = _multiply(power, power)
    return result
