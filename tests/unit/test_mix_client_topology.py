"""A mixnet client takes the next topology (routes then leave out the nodes it dropped), but
never an older one, nor one without the client's gateway."""

from __future__ import annotations

import dataclasses
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from tests.mixnet_support import make_testnet
from tests.servers import ManualClock

from atopos.mixnet.client import MixnetClient
from atopos.mixnet.settings import ClientSettings
from atopos.protocol.mix_route import choose_route

NET = make_testnet(list(range(42000, 42008)))


def test_the_next_topology_replaces_the_old_one() -> None:
    topology = NET.topology
    clock = ManualClock()
    client = MixnetClient(
        topology,
        topology.gateways[0],
        X25519PrivateKey.generate(),
        os.urandom(32),
        clock,
        os.urandom,
        ClientSettings(),
    )
    dead, alive = topology.layers[1]
    without_dead = dataclasses.replace(
        topology,
        serial=topology.serial + 1,
        layers=(topology.layers[0], (alive,), topology.layers[2]),
    )
    client.use_topology(without_dead)
    assert client.topology is without_dead
    for _ in range(30):
        route = choose_route(
            client.topology, topology.gateways[0], topology.gateways[1], os.urandom
        )
        assert dead.node_id not in {hop.address for hop in route}
    with pytest.raises(ValueError, match="older topology"):
        client.use_topology(topology)
    no_gateway = dataclasses.replace(
        without_dead, serial=without_dead.serial + 1, gateways=(topology.gateways[1],)
    )
    with pytest.raises(ValueError, match="without this client's gateway"):
        client.use_topology(no_gateway)
