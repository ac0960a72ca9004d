"""The proof of work each server last asked of this process, so that a stamp
(docs/protocol/access.md, "Stamp: a reveal in one request") is solved at the bits that
server will want: too few and it answers with a challenge (one request more), too many cost
this reader extra work only.
"""

from __future__ import annotations

import threading

from atopos.protocol.access_path import DEFAULT_STAMP_BITS

__all__ = ["SERVER_BITS", "ServerBits"]

# Servers remembered at once; the oldest is forgotten first (a CLI run talks to one).
_CAPACITY = 64
# The most leading zero bits a proof of work can ask (crypto/pow.py: a 64-bit nonce).
_MAX_BITS = 64


class ServerBits:
    """Bits per server (its URL, as `SecretsApi.server`); thread-safe, bounded."""

    def __init__(self, capacity: int = _CAPACITY) -> None:
        self._capacity = capacity
        self._bits: dict[str, int] = {}
        self._lock = threading.Lock()

    def assumed(self, server: str) -> int:
        """The bits `server` last asked in a challenge, else the default `--pow-bits`."""
        with self._lock:
            return self._bits.get(server, DEFAULT_STAMP_BITS)

    def learn(self, server: str, bits: int) -> None:
        """`server` asked `bits` in a challenge just now. A value no proof of work can have
        (not a whole number from 0 to 64) is ignored: remembered, it would break every
        later reveal from this server."""
        if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= _MAX_BITS:
            return
        with self._lock:
            self._bits.pop(server, None)
            self._bits[server] = bits
            while len(self._bits) > self._capacity:
                del self._bits[next(iter(self._bits))]


# This process's memory, shared by every reveal (sync and async).
SERVER_BITS = ServerBits()
