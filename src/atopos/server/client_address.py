"""Where a request comes from, as the rate limits and the proof-of-work price count it.

One source serves every product and every kind of connection (HTTP requests and WebSocket
handshakes both carry an ASGI scope): the socket's peer, or the address a trusted proxy
forwarded. The Tor issue adds a source that names the circuit an onion client came on.
The address only ever feeds `EphemeralIdentifiers`; it is never logged or stored.
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import Scope

__all__ = ["ClientAddressSource", "SocketPeer", "TrustedProxy", "client_address_source"]


class ClientAddressSource(Protocol):
    def address_of(self, scope: Scope) -> str:
        """The client's address (an IP in text form, or another stable name for it)."""
        ...


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class SocketPeer:
    """The address at the other end of the TCP connection."""

    def address_of(self, scope: Scope) -> str:
        return _peer(scope)


class TrustedProxy:
    """Behind reverse proxies on known addresses: X-Forwarded-For names the client.

    Each proxy appends the address it received the request from. Every entry left of the
    last one a trusted proxy wrote can be forged by the client, so the client is the
    right-most entry that is not a trusted proxy, read across all X-Forwarded-For lines in
    order (RFC 9110: repeated header lines are one comma-separated list)."""

    def __init__(self, proxies: tuple[str, ...]) -> None:
        self._proxies = frozenset(proxies)

    def address_of(self, scope: Scope) -> str:
        address = _peer(scope)
        if address not in self._proxies:
            return address
        entries = [
            entry.strip()
            for value in _header_lines(scope, b"x-forwarded-for")
            for entry in value.split(",")
        ]
        for entry in reversed(entries):
            if not entry:
                continue
            if entry not in self._proxies:
                return entry
            address = entry
        return address


def _header_lines(scope: Scope, name: bytes) -> list[str]:
    """Every value of a header, in the order the lines came."""
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


def client_address_source(trusted_proxies: tuple[str, ...]) -> ClientAddressSource:
    return TrustedProxy(trusted_proxies) if trusted_proxies else SocketPeer()
