"""Where a request comes from, as the rate limits and the proof-of-work price count it.

One source serves every product and every kind of connection (HTTP requests and WebSocket
handshakes both carry an ASGI scope): the socket's peer, or the address a trusted proxy
forwarded, or, for a client of the onion service, the Tor circuit it came on (its
listener read that from tor's PROXY line: server/connection_guard.py). The address only
ever feeds `EphemeralIdentifiers`; it is never logged or stored.
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import Scope

from atopos.server.onion_proxy_header import is_circuit_address

__all__ = [
    "ClientAddressSource",
    "OnionCircuit",
    "SocketPeer",
    "TrustedProxy",
    "client_address_source",
]


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


class OnionCircuit:
    """An onion client is its Tor circuit; every other client is named by `others`.

    The onion listener names each connection's peer `tor-circuit:<id>` from tor's PROXY
    line; a TCP peer on the open listener is always an IP address, so it cannot pose as a
    circuit, and no header is consulted for onion clients (they reach the node directly,
    not through the TLS proxy)."""

    def __init__(self, others: ClientAddressSource) -> None:
        self._others = others

    def address_of(self, scope: Scope) -> str:
        peer = _peer(scope)
        if is_circuit_address(peer):
            return peer
        return self._others.address_of(scope)


def _header_lines(scope: Scope, name: bytes) -> list[str]:
    """Every value of a header, in the order the lines came."""
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


def client_address_source(trusted_proxies: tuple[str, ...]) -> ClientAddressSource:
    others: ClientAddressSource = TrustedProxy(trusted_proxies) if trusted_proxies else SocketPeer()
    return OnionCircuit(others)
