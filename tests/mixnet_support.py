"""A test mixnet: keys and a signed topology of 3 layers x 2 nodes plus 2 gateways."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.protocol.mix_topology import MixNode, Topology, sign_topology

AUTHORITY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
VALID_FROM = 1_700_000_000
VALID_UNTIL = 4_000_000_000
KEY_EPOCH = 1


@dataclass(frozen=True)
class TestNet:
    topology: Topology
    keys: dict[bytes, X25519PrivateKey]  # node id -> private key
    document: bytes


def make_testnet(
    ports: list[int], layers: int = 3, per_layer: int = 2, gateways: int = 2
) -> TestNet:
    """A topology on 127.0.0.1 with `ports` in order (layers first, then gateways)."""
    count = layers * per_layer + gateways
    assert len(ports) == count
    keys: dict[bytes, X25519PrivateKey] = {}
    nodes = []
    for index, port in enumerate(ports):
        key = X25519PrivateKey.from_private_bytes(bytes([index + 1]) * 31 + b"\x40")
        node_id = bytes([0xA0 + index]) * 32
        keys[node_id] = key
        nodes.append(
            MixNode(node_id, "127.0.0.1", port, key.public_key().public_bytes_raw(), KEY_EPOCH)
        )
    topology = Topology(
        serial=1,
        valid_from=VALID_FROM,
        valid_until=VALID_UNTIL,
        layers=tuple(
            tuple(nodes[layer * per_layer : (layer + 1) * per_layer]) for layer in range(layers)
        ),
        gateways=tuple(nodes[layers * per_layer :]),
    )
    return TestNet(topology, keys, sign_topology(topology, AUTHORITY))
