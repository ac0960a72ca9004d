"""Choosing a mixnet route and its delays (docs/protocol/mixnet.md, "Routes").

Loopix routes: the sender's gateway, one node of each layer chosen uniformly, the
recipient's gateway. Each hop's delay is drawn by the sender from an exponential
distribution (Poisson mixing), so a node cannot tell how long a packet has already waited.
Every draw comes from the injected `RandomBytes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.sphinx import MAX_DELAY_MS, Hop
from atopos.protocol.mix_topology import MixNode, Topology

__all__ = [
    "DEFAULT_MEAN_DELAY_MS",
    "choose_index",
    "choose_route",
    "delayed_hop",
    "exponential",
]

DEFAULT_MEAN_DELAY_MS = 50.0
_UNIFORM_BITS = 53


def _uniform(random_bytes: RandomBytes) -> float:
    """A float in (0, 1): 53 random bits, shifted half a step off zero."""
    bits = int.from_bytes(draw(random_bytes, 8), "big") >> (64 - _UNIFORM_BITS)
    return (bits + 0.5) / float(1 << _UNIFORM_BITS)


def exponential(random_bytes: RandomBytes, mean: float) -> float:
    """A draw from Exp(1 / mean) by inversion; 0 when `mean` is 0."""
    if mean < 0:
        raise ValueError("a mean delay is not negative")
    return -mean * math.log(_uniform(random_bytes))


def choose_index(random_bytes: RandomBytes, count: int) -> int:
    """A uniform index below `count` (rejection sampling, so no modulo bias)."""
    if not 1 <= count <= 2**32:
        raise ValueError("choose from 1 to 2**32 items")
    limit = 2**64 - (2**64 % count)
    while True:
        value = int.from_bytes(draw(random_bytes, 8), "big")
        if value < limit:
            return value % count


def delayed_hop(node: MixNode, random_bytes: RandomBytes, mean_delay_ms: float) -> Hop:
    """The Sphinx hop for `node` with an exponential delay of mean `mean_delay_ms`."""
    delay = min(round(exponential(random_bytes, mean_delay_ms)), MAX_DELAY_MS)
    return Hop(public_key=node.public_key, address=node.node_id, delay_ms=delay)


def choose_route(
    topology: Topology,
    entry: MixNode,
    exit_gateway: MixNode,
    random_bytes: RandomBytes,
    mean_delay_ms: float = DEFAULT_MEAN_DELAY_MS,
    suspicion: Mapping[bytes, int] | None = None,
) -> list[Hop]:
    """entry, one node per layer, exit_gateway; each with an exponential delay.

    `suspicion` counts, per node id, the sender's loops through it that did not come back
    lately; in each layer the node is drawn uniformly from the least suspect ones, so a
    dead node is avoided even when a busy network made its neighbours look suspect too."""
    suspicion = suspicion or {}
    nodes = [entry]
    for layer in topology.layers:
        least = min(suspicion.get(n.node_id, 0) for n in layer)
        healthy = [n for n in layer if suspicion.get(n.node_id, 0) == least]
        nodes.append(healthy[choose_index(random_bytes, len(healthy))])
    nodes.append(exit_gateway)
    return [delayed_hop(node, random_bytes, mean_delay_ms) for node in nodes]
