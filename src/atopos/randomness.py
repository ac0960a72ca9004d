"""The one place Atopos draws random bytes from the operating system. Everything else is
handed a `RandomBytes` source (this one in use, a seeded one in tests and vectors)."""

from __future__ import annotations

import os

from atopos.crypto.randomness import RandomBytes

__all__ = ["RandomBytes", "system_random_bytes"]


def system_random_bytes(size: int) -> bytes:
    """`size` bytes from the kernel's CSPRNG (getrandom(2))."""
    return os.urandom(size)
