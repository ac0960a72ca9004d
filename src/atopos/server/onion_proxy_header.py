"""The PROXY protocol line tor writes before each onion client's stream, read sans-I/O.

With `HiddenServiceExportCircuitID haproxy`, tor opens every stream to the onion service's
local port with one PROXY protocol v1 line (haproxy's proxy-protocol.txt, section 2.1) whose
source address carries the client's rendezvous circuit: an address in
`fc00:dead:beef:4dad::/64` whose last 32 bits are the circuit's global identifier (tor's
connection_edge.c, `export_hs_client_circuit_id`); tor 0.4.9 writes, for circuit 24,

    PROXY TCP6 fc00:dead:beef:4dad::0:18 ::1 24 80\\r\\n

Only that shape is accepted, and only on the onion listener; the node then names the client
`tor-circuit:<id>`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "CIRCUIT_PREFIX",
    "MAX_PROXY_LINE",
    "ProxyHeaderRefused",
    "circuit_address",
    "is_circuit_address",
    "parse_proxy_line",
]

# The v1 specification's longest line, CRLF included.
MAX_PROXY_LINE = 107
CIRCUIT_PREFIX = "tor-circuit:"
_LINE = re.compile(
    rb"PROXY TCP6 ([0-9a-fA-F:]{2,39}) ([0-9a-fA-F:.]{2,45}) [0-9]{1,5} [0-9]{1,5}\r\n"
)
_CIRCUIT_NETWORK = ipaddress.IPv6Network("fc00:dead:beef:4dad::/64")


class ProxyHeaderRefused(ValueError):
    """The first bytes on the onion listener were not tor's PROXY line."""


def parse_proxy_line(line: bytes) -> int:
    """The circuit identifier in one PROXY line (CRLF included)."""
    match = _LINE.fullmatch(line)
    if match is None:
        raise ProxyHeaderRefused("not a PROXY line from tor")
    try:
        source = ipaddress.IPv6Address(match.group(1).decode("ascii"))
    except ValueError:
        raise ProxyHeaderRefused("not an IPv6 source address") from None
    if source not in _CIRCUIT_NETWORK or int(source) >> 32 & 0xFFFFFFFF:
        raise ProxyHeaderRefused("not a circuit address of tor")
    return int(source) & 0xFFFFFFFF


def circuit_address(circuit: int) -> str:
    """How the node names an onion client: its circuit (never an IP, so it cannot collide)."""
    return f"{CIRCUIT_PREFIX}{circuit}"


def is_circuit_address(address: str) -> bool:
    return address.startswith(CIRCUIT_PREFIX)
