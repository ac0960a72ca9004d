"""Randomness as the crypto code takes it: a `RandomBytes` callable passed in by the caller
(`os.urandom` in use, a seeded source in the test vectors), never drawn here on its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

__all__ = ["RandomBytes", "draw"]

RandomBytes: TypeAlias = Callable[[int], bytes]


def draw(random_bytes: RandomBytes, size: int) -> bytes:
    """`random_bytes(size)` as bytes; ValueError unless it is exactly `size` bytes."""
    drawn = random_bytes(size)
    # Measured before the copy, as bytes() of an int would be that many zero bytes...
    if len(drawn) != size:
        raise ValueError(f"random_bytes({size}) returned {len(drawn)} bytes")
    copied = bytes(drawn)
    # ...and after it, as a buffer of wider items (array("I")) holds more bytes than items.
    if len(copied) != size:
        raise ValueError(f"random_bytes({size}) returned {len(copied)} bytes")
    return copied
