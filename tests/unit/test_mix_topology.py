"""The signed topology document (docs/protocol/mixnet.md, "Topology"): the vectors of
tests/vectors/mixnet/topology.json, written with json and pyca directly, and round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from atopos.crypto.base64url import b64url_decode
from atopos.protocol.mix_topology import (
    MAX_TOPOLOGY_BYTES,
    InvalidTopology,
    MixExit,
    MixNode,
    Topology,
    read_topology,
    sign_topology,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "mixnet" / "topology.json").read_text()
)
AUTHORITY = Ed25519PublicKey.from_public_bytes(b64url_decode(VECTORS["authority_public_key"]))
NOW = VECTORS["valid"]["now"]


def _expected_node(wire: dict[str, Any]) -> MixNode:
    return MixNode(
        node_id=b64url_decode(wire["id"]),
        host=wire["host"],
        port=wire["port"],
        public_key=b64url_decode(wire["public_key"]),
        key_epoch=wire["key_epoch"],
    )


def test_the_valid_vector_reads_as_its_body() -> None:
    body = VECTORS["valid"]["body"]
    topology = read_topology(VECTORS["valid"]["document"].encode(), AUTHORITY, NOW)
    assert topology == Topology(
        serial=body["serial"],
        valid_from=body["valid_from"],
        valid_until=body["valid_until"],
        layers=tuple(tuple(_expected_node(n) for n in layer) for layer in body["layers"]),
        gateways=tuple(_expected_node(n) for n in body["gateways"]),
    )
    first = topology.layers[1][0]
    assert topology.node(first.node_id) == first
    assert topology.layer_of(first.node_id) == 1
    assert topology.layer_of(topology.gateways[0].node_id) is None
    assert topology.node(bytes(32)) is None


@pytest.mark.parametrize("case", sorted(VECTORS["invalid"]))
def test_invalid_vectors_are_refused(case: str) -> None:
    with pytest.raises(InvalidTopology):
        read_topology(VECTORS["invalid"][case].encode(), AUTHORITY, NOW)


@pytest.mark.parametrize("when", ["expired_at", "not_yet_at"])
def test_a_document_outside_its_window_is_refused(when: str) -> None:
    with pytest.raises(InvalidTopology):
        read_topology(VECTORS["valid"]["document"].encode(), AUTHORITY, VECTORS[when])


def test_sign_then_read_round_trips_and_pins_the_authority() -> None:
    topology = read_topology(VECTORS["valid"]["document"].encode(), AUTHORITY, NOW)
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    document = sign_topology(topology, key)
    assert read_topology(document, key.public_key(), NOW) == topology
    with pytest.raises(InvalidTopology):
        read_topology(document, AUTHORITY, NOW)


def test_an_oversized_document_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidTopology):
        read_topology(b" " * (MAX_TOPOLOGY_BYTES + 1), AUTHORITY, NOW)


@pytest.mark.parametrize("document", [b"", b"[]", b"\xff", b'{"body":"x"}', b"[" * 10000])
def test_garbage_is_refused(document: bytes) -> None:
    with pytest.raises(InvalidTopology):
        read_topology(document, AUTHORITY, NOW)


def test_exits_are_signed_checked_and_optional() -> None:
    from tests.mixnet_support import EXIT_KEY, make_testnet

    net = make_testnet(list(range(1000, 1008)))
    authority = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    read = read_topology(net.document, authority.public_key(), 1_800_000_000)
    assert read.exits == net.topology.exits
    assert read.exits[0].public_key == EXIT_KEY.public_key().public_bytes_raw()
    assert b'"exits"' not in sign_topology(dataclasses.replace(net.topology, exits=()), authority)
    gateway = net.topology.gateways[0]
    for bad in (
        MixExit(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32),  # not a gateway
        MixExit(gateway.node_id, b"\x02" * 32, gateway.public_key),  # a node's key
    ):
        with pytest.raises(InvalidTopology):
            sign_topology(dataclasses.replace(net.topology, exits=(bad,)), authority)
