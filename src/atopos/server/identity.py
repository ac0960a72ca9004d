"""Ephemeral client identifiers for rate limiting.

An identifier is HMAC-SHA256 over the client's address (an IPv6 address by its /64, so one
host cannot rotate through its own prefix) under a key that lives in RAM only and is replaced
every `rotate_after` seconds. Identifiers are never written to logs.

One node makes its key at random: after a rotation, yesterday's identifiers cannot be linked
to today's or to an address. Nodes that share a Redis must agree on every client's
identifier, so each derives the key of the current period (the number of whole periods since
the epoch) from the shared node key with HKDF: the key still changes every period, on every
node at once, and is never stored anywhere; but whoever holds the node key can recompute any
period's key (docs/storage-redis.md weighs this).
"""

from __future__ import annotations

import dataclasses
import hmac
import socket

from atopos.crypto.base64url import b64url_encode
from atopos.crypto.hkdf import derive_key
from atopos.crypto.sizes import NODE_KEY_BYTES
from atopos.randomness import RandomBytes, system_random_bytes

__all__ = ["ClientId", "EphemeralIdentifiers", "network_of", "wider_networks_of"]


_V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96


def network_of(address: str) -> bytes:
    """The unit a rate limit counts: the IPv4 address, or the /64 of an IPv6 address.
    (inet_pton, not `ipaddress`: this runs for every request, and is 20 times faster.)"""
    try:
        return b"4" + socket.inet_pton(socket.AF_INET, address)
    except OSError:
        pass
    try:
        # A link-local peer comes with its zone ("fe80::1%eth0"); the zone is no part of it.
        packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    except OSError:
        # Not an IP (a Unix socket peer, a Tor circuit id): count it as given.
        return b"other:" + address.encode("utf-8", "replace")
    if packed.startswith(_V4_MAPPED):
        return b"4" + packed[12:]
    return b"6" + packed[:8]


# One IPv6 customer is usually given a /56 or a /48, and can hop between its /64s at will:
# those wider networks have budgets of their own (server/ratelimit.py scales them).
_WIDER_IPV6_PREFIXES = ((b"6/56", 7), (b"6/48", 6))


def wider_networks_of(address: str) -> tuple[bytes, ...]:
    """The /56 and /48 of an IPv6 address (nothing for any other address)."""
    narrow = network_of(address)
    if not narrow.startswith(b"6"):
        return ()
    return tuple(tag + narrow[1 : 1 + size] for tag, size in _WIDER_IPV6_PREFIXES)


@dataclasses.dataclass(frozen=True, slots=True)
class ClientId:
    """One client as the limits count it: the identifier of its address (or /64), and of
    the wider networks it belongs to, narrowest first."""

    narrow: str
    wider: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return (self.narrow, *self.wider)


_IDENTIFIER_INFO = b"atopos/rate-limit-identifier/v1\x00"


def period_key(node_key: bytes, period: int) -> bytes:
    """The identifier key of one period, derived from the node key shared by all nodes."""
    return derive_key(node_key, info=_IDENTIFIER_INFO + period.to_bytes(8, "big"))


class EphemeralIdentifiers:
    def __init__(
        self,
        now: float,
        rotate_after: float = 24 * 3600,
        *,
        node_key: bytes | None = None,
        random_bytes: RandomBytes = system_random_bytes,
    ) -> None:
        """A random key per process, or, given `node_key`, the same key on every node."""
        self._rotate_after = rotate_after
        self._node_key = node_key
        self._random_bytes = random_bytes
        self._rotate(now)

    def _rotate(self, now: float) -> None:
        if self._node_key is None:
            self._key = self._random_bytes(NODE_KEY_BYTES)
            self._born = now
        else:
            period = int(now // self._rotate_after)
            self._key = period_key(self._node_key, period)
            # Periods start at multiples of rotate_after, on every node alike.
            self._born = period * self._rotate_after

    def for_address(self, address: str, now: float) -> str:
        return self._identifier(network_of(address), now)

    def client(self, address: str, now: float) -> ClientId:
        """The identifiers of an address and of its wider networks."""
        wider = tuple(self._identifier(net, now) for net in wider_networks_of(address))
        return ClientId(self.for_address(address, now), wider)

    def _identifier(self, network: bytes, now: float) -> str:
        if now - self._born >= self._rotate_after:
            self._rotate(now)
        # No address -> identifier cache on purpose: RAM would then hold recent addresses.
        return b64url_encode(hmac.digest(self._key, network, "sha256")[:16])
