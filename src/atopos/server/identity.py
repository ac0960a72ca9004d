"""Ephemeral client identifiers for rate limiting.

An identifier is HMAC-SHA256 over the client's address (an IPv6 address by its /64, so one
host cannot rotate through its own prefix) under a key that lives in RAM only and is replaced
every `rotate_after` seconds. Identifiers are never written to disk or to logs; after a
rotation, yesterday's identifiers cannot be linked to today's or to an address.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from atopos.crypto.base64url import b64url_encode

__all__ = ["EphemeralIdentifiers", "network_of"]


def network_of(address: str) -> bytes:
    """The unit a rate limit counts: the IPv4 address, or the /64 of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        # Not an IP (a Unix socket peer, a Tor circuit id): count it as given.
        return b"other:" + address.encode("utf-8", "replace")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.packed
        return ip.packed[:8]
    return ip.packed


class EphemeralIdentifiers:
    def __init__(self, now: float, rotate_after: float = 24 * 3600) -> None:
        self._rotate_after = rotate_after
        self._rotate(now)

    def _rotate(self, now: float) -> None:
        self._key = os.urandom(32)
        self._born = now

    def for_address(self, address: str, now: float) -> str:
        if now - self._born >= self._rotate_after:
            self._rotate(now)
        # No address -> identifier cache on purpose: RAM would then hold recent addresses.
        return b64url_encode(hmac.digest(self._key, network_of(address), "sha256")[:16])
