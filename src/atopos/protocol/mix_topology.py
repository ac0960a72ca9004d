"""The signed mixnet topology document (docs/protocol/mixnet.md, "Topology").

A topology authority signs, with an Ed25519 key every client and node pins, the list of mix
layers and gateways: each node's id (its 32-byte Sphinx address), host, port, X25519 public
key and key epoch, and the window in which the document is valid. `read_topology` checks the
signature over the exact body bytes first and only then parses them, strictly: unknown
fields, duplicates and out-of-range values are refused as one `InvalidTopology`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.errors import CryptoError
from atopos.crypto.sphinx import ADDRESS_BYTES, MAX_HOPS

__all__ = [
    "MAX_EXITS",
    "MAX_LAYERS",
    "MAX_NODES_PER_LAYER",
    "MAX_TOPOLOGY_BYTES",
    "SIGNATURE_CONTEXT",
    "InvalidTopology",
    "MixExit",
    "MixNode",
    "Topology",
    "read_topology",
    "sign_topology",
]

# A route is entry gateway, one node per layer, exit gateway: all within Sphinx's 5 hops.
MAX_LAYERS = MAX_HOPS - 2
MAX_NODES_PER_LAYER = 64
MAX_GATEWAYS = 64
MAX_EXITS = 16
MAX_TOPOLOGY_BYTES = 64 * 1024
MAX_HOST_CHARS = 253
SIGNATURE_CONTEXT = b"atopos mix topology v1\x00"
_VERSION = 1
_KEY_BYTES = 32
_SIGNATURE_BYTES = 64


class InvalidTopology(CryptoError):
    """The topology document was refused: bad signature, malformed, or outside its window."""


class _WireNode(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_HOST_CHARS)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    public_key: str
    key_epoch: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


_WireLayer = Annotated[list[_WireNode], msgspec.Meta(min_length=1, max_length=MAX_NODES_PER_LAYER)]


class _WireExit(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    gateway: str
    mailbox: str
    public_key: str


class _WireBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    version: int
    serial: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    valid_from: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    valid_until: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    layers: Annotated[list[_WireLayer], msgspec.Meta(min_length=1, max_length=MAX_LAYERS)]
    gateways: Annotated[list[_WireNode], msgspec.Meta(min_length=1, max_length=MAX_GATEWAYS)]
    exits: Annotated[list[_WireExit], msgspec.Meta(max_length=MAX_EXITS)] = []


class _WireDocument(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    body: str
    signature: str


@dataclass(frozen=True, slots=True)
class MixNode:
    """One mix node or gateway: `node_id` is its Sphinx address."""

    node_id: bytes
    host: str
    port: int
    public_key: bytes
    key_epoch: int


@dataclass(frozen=True, slots=True)
class MixExit:
    """An exit service in front of an Atopos server: the mix address it receives at (its
    gateway's id, its mailbox id) and its own X25519 key, which is not a node's Sphinx key."""

    gateway_id: bytes
    mailbox_id: bytes
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Topology:
    """A verified topology: mix layers in route order, and the gateways."""

    serial: int
    valid_from: int
    valid_until: int
    layers: tuple[tuple[MixNode, ...], ...]
    gateways: tuple[MixNode, ...]
    exits: tuple[MixExit, ...] = ()
    _by_id: dict[bytes, MixNode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A node looks its next hop up once per packet: by id, not by scanning.
        object.__setattr__(self, "_by_id", {n.node_id: n for n in self.nodes()})

    def nodes(self) -> Iterator[MixNode]:
        """Every node: the layers' in order, then the gateways."""
        for layer in self.layers:
            yield from layer
        yield from self.gateways

    def node(self, node_id: bytes) -> MixNode | None:
        """The node with this Sphinx address, or None."""
        return self._by_id.get(node_id)

    def layer_of(self, node_id: bytes) -> int | None:
        """0-based layer of a mix node; None for a gateway or an unknown id."""
        for index, layer in enumerate(self.layers):
            if any(n.node_id == node_id for n in layer):
                return index
        return None


def _key(text: str, size: int) -> bytes:
    try:
        raw = b64url_decode(text)
    except ValueError:
        raise InvalidTopology from None
    if len(raw) != size:
        raise InvalidTopology
    return raw


def _check_host(host: str) -> None:
    """An IP address or an LDH host name: nothing a resolver or a log could misread."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.split(".")
    for label in labels:
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            raise InvalidTopology
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            raise InvalidTopology


def _node(wire: _WireNode) -> MixNode:
    _check_host(wire.host)
    return MixNode(
        node_id=_key(wire.id, ADDRESS_BYTES),
        host=wire.host,
        port=wire.port,
        public_key=_key(wire.public_key, _KEY_BYTES),
        key_epoch=wire.key_epoch,
    )


def _exit(wire: _WireExit) -> MixExit:
    return MixExit(
        gateway_id=_key(wire.gateway, ADDRESS_BYTES),
        mailbox_id=_key(wire.mailbox, ADDRESS_BYTES),
        public_key=_key(wire.public_key, _KEY_BYTES),
    )


def _body(body: bytes) -> Topology:
    try:
        wire = msgspec.json.decode(body, type=_WireBody)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidTopology from None
    if wire.version != _VERSION or wire.valid_from >= wire.valid_until:
        raise InvalidTopology
    topology = Topology(
        serial=wire.serial,
        valid_from=wire.valid_from,
        valid_until=wire.valid_until,
        layers=tuple(tuple(_node(n) for n in layer) for layer in wire.layers),
        gateways=tuple(_node(n) for n in wire.gateways),
        exits=tuple(_exit(e) for e in wire.exits),
    )
    nodes = list(topology.nodes())
    if len({n.node_id for n in nodes}) != len(nodes):
        raise InvalidTopology
    if len({n.public_key for n in nodes}) != len(nodes):
        raise InvalidTopology
    if len({(n.host, n.port) for n in nodes}) != len(nodes):
        raise InvalidTopology
    gateway_ids = {n.node_id for n in topology.gateways}
    if any(e.gateway_id not in gateway_ids for e in topology.exits):
        raise InvalidTopology
    exit_keys = {e.public_key for e in topology.exits} | {n.public_key for n in nodes}
    if len(exit_keys) != len(nodes) + len(topology.exits):
        raise InvalidTopology
    return topology


def read_topology(document: bytes, authority: Ed25519PublicKey, now: float) -> Topology:
    """The topology in `document` if `authority` signed it and `now` is in its window."""
    if len(document) > MAX_TOPOLOGY_BYTES:
        raise InvalidTopology
    try:
        wire = msgspec.json.decode(document, type=_WireDocument)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidTopology from None
    body = wire.body.encode("utf-8", "surrogatepass")
    try:
        authority.verify(_key(wire.signature, _SIGNATURE_BYTES), SIGNATURE_CONTEXT + body)
    except InvalidSignature:
        raise InvalidTopology from None
    topology = _body(body)
    if not topology.valid_from <= now < topology.valid_until:
        raise InvalidTopology
    return topology


def _wire_node(node: MixNode) -> _WireNode:
    return _WireNode(
        id=b64url_encode(node.node_id),
        host=node.host,
        port=node.port,
        public_key=b64url_encode(node.public_key),
        key_epoch=node.key_epoch,
    )


def sign_topology(topology: Topology, authority: Ed25519PrivateKey) -> bytes:
    """The signed document for `topology` (what an authority publishes)."""
    body = msgspec.json.encode(
        _WireBody(
            version=_VERSION,
            serial=topology.serial,
            valid_from=topology.valid_from,
            valid_until=topology.valid_until,
            layers=[[_wire_node(n) for n in layer] for layer in topology.layers],
            gateways=[_wire_node(n) for n in topology.gateways],
            exits=[
                _WireExit(
                    gateway=b64url_encode(e.gateway_id),
                    mailbox=b64url_encode(e.mailbox_id),
                    public_key=b64url_encode(e.public_key),
                )
                for e in topology.exits
            ],
        )
    )
    _body(body)  # refuse to sign what a reader would refuse
    signature = authority.sign(SIGNATURE_CONTEXT + body)
    return msgspec.json.encode(
        _WireDocument(body=body.decode("utf-8"), signature=b64url_encode(signature))
    )
