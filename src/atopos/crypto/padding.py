"""Padmé padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
Communication with PURBs", PETS 2019).

Padding a length L to padme(L) leaks only O(log log L) bits of it, at a cost of at most
about 12% (less than 6.25% once L >= 512).
"""

from __future__ import annotations

__all__ = ["MIN_PADDED_SIZE", "padded_size", "padme"]

# Everything below this is padded up to it, so short texts all look alike.
MIN_PADDED_SIZE = 512


def padme(length: int) -> int:
    """The Padmé length of `length`: keep the top floor(log2 E) + 1 bits, round up the rest.

    E = floor(log2 L), S = floor(log2 E) + 1, z = E - S; round L up to a multiple of 2**z.
    """
    if length < 0:
        raise ValueError("length must not be negative")
    if length < 2:
        # log2(0) is undefined and E = 0 leaves nothing to round; both stay as they are.
        return length
    exponent = length.bit_length() - 1  # floor(log2 L), exact for any int
    mantissa_bits = exponent.bit_length()  # floor(log2 E) + 1
    mask = (1 << (exponent - mantissa_bits)) - 1
    return (length + mask) & ~mask


def padded_size(length: int) -> int:
    """The length an unpadded plaintext of `length` bytes is padded to: padme(max(L, 512))."""
    return padme(max(length, MIN_PADDED_SIZE))
