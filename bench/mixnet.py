"""Mixnet benchmark: what a node and a client cost, and the latency the delays add.

    .venv/bin/python bench/mixnet.py [--seconds 1.0] [--rounds 3] [--messages 200]
                                     [--mean-delay-ms 20] [--send-rate 50]

- hop processings/s on one core through a node's whole core (`MixCore.receive`: Sphinx,
  replay tags, the transition table) and through `process_packet` alone;
- a client's packet build: route choice with delays, sealing to the mailbox key, 5-hop Sphinx;
- the sender entropy an observer of one mix node's links has: for each packet leaving a
  layer node, the posterior over the packets that came in before it, p_i ~ exp(-(t_out -
  t_in_i) / mean) (exponential mixing is memoryless), and its Shannon entropy in bits
  (Serjantov and Danezis' metric, as the Loopix paper uses); 2^H is the effective anonymity
  set. Observing all links (a global observer) is not simulated yet;
- end-to-end latency on loopback through 3 layers x 2 nodes and 2 gateways run in this
  process (the real node and client code, cover on), against the delays the senders drew:
  5 hops of Exp(mean) each (a Gamma(5, mean) sum, mean 5 x mean) plus the wait for the
  client's next send tick.

Prints ONE JSON line on stdout. See docs/performance.md, "Mixnet nodes and clients".
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.clock import SystemClock
from atopos.crypto.sphinx import create_forward_packet, process_packet
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.node import MixNodeService, Observation
from atopos.mixnet.settings import ClientSettings, NodeSettings
from atopos.protocol.mix_message import MessageKind, MixAddress, seal_message
from atopos.protocol.mix_node import MixCore, Role
from atopos.protocol.mix_route import choose_route
from atopos.protocol.mix_topology import MixNode, Topology


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def rate(work: Callable[[], object], seconds: float, rounds: int) -> float:
    """Best calls/s over `rounds` runs (best: least disturbed by others on the machine)."""
    best = 0.0
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(10):
                work()
            calls += 10
        best = max(best, calls / elapsed)
    return best


def network() -> tuple[Topology, dict[bytes, X25519PrivateKey], list[socket.socket]]:
    sockets, nodes, keys = [], [], {}
    for _ in range(8):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        key = X25519PrivateKey.generate()
        node_id = os.urandom(32)
        keys[node_id] = key
        public = key.public_key().public_bytes_raw()
        nodes.append(MixNode(node_id, "127.0.0.1", sock.getsockname()[1], public, 0))
    layers = (tuple(nodes[0:2]), tuple(nodes[2:4]), tuple(nodes[4:6]))
    now = int(time.time())
    return Topology(1, now - 60, now + 3600, layers, tuple(nodes[6:])), keys, sockets


def processing(
    topology: Topology, keys: dict[bytes, X25519PrivateKey], args: argparse.Namespace
) -> dict[str, float]:
    entry, exit_gateway = topology.gateways
    recipient = MixAddress(exit_gateway.node_id, os.urandom(32), os.urandom(32))
    recipient = MixAddress(
        exit_gateway.node_id,
        recipient.mailbox_id,
        X25519PrivateKey.generate().public_key().public_bytes_raw(),
    )

    def build() -> bytes:
        route = choose_route(topology, entry, exit_gateway, os.urandom, 50.0)
        message = seal_message(recipient, MessageKind.DATA, b"x" * 100, os.urandom)
        return create_forward_packet(route, recipient.mailbox_id, message, os.urandom)

    packets = [build() for _ in range(4000)]
    core = MixCore(entry.node_id, Role.GATEWAY, {0: keys[entry.node_id]}, topology, 10**7)
    feed = iter(packets)
    core_rate = rate(lambda: core.receive(next(feed)), args.seconds / 4, 1)
    bare_feed = iter(packets)
    key = keys[entry.node_id]
    sphinx_rate = rate(lambda: process_packet(key, next(bare_feed)), args.seconds / 4, 1)
    build_rate = rate(build, args.seconds, args.rounds)
    return {
        "node_hop_per_s": round(core_rate),
        "sphinx_hop_per_s": round(sphinx_rate),
        "client_build_ms": round(1000 / build_rate, 3),
    }


async def latency(args: argparse.Namespace) -> dict[str, float]:
    topology, keys, sockets = network()
    node_settings = NodeSettings(
        mean_delay_ms=args.mean_delay_ms, loop_rate=1.0, drop_rate=1.0, record_observations=True
    )
    services = []
    for node, sock in zip(topology.nodes(), sockets, strict=True):
        service = MixNodeService(
            node, {0: keys[node.node_id]}, topology, SystemClock(), os.urandom, node_settings
        )
        await service.start(sock)
        services.append(service)
    settings = ClientSettings(
        send_rate=args.send_rate, loop_rate=2.0, mean_delay_ms=args.mean_delay_ms
    )
    clients = [
        MixnetClient(
            topology,
            gateway,
            X25519PrivateKey.generate(),
            os.urandom(32),
            SystemClock(),
            os.urandom,
            settings,
        )
        for gateway in topology.gateways
    ]
    for client in clients:
        await client.start()
    alice, bob = clients
    sent: dict[bytes, float] = {}
    latencies: list[float] = []
    started = time.monotonic()
    try:
        for index in range(args.messages):
            tag = b"%08d" % index
            sent[tag] = time.monotonic()
            alice.send(bob.address, tag)
            await asyncio.sleep(1.5 / args.send_rate)  # below the send rate: no backlog
            while not bob._inbox.empty():
                got = bob._inbox.get_nowait()
                latencies.append(time.monotonic() - sent[got])
        deadline = time.monotonic() + 10
        while len(latencies) < args.messages and time.monotonic() < deadline:
            got = await asyncio.wait_for(bob.receive(), 10)
            latencies.append(time.monotonic() - sent[got])
    finally:
        elapsed = time.monotonic() - started
        for client in clients:
            await client.close()
        for service in services:
            await service.close()
    entropies = [
        entropy
        for service in services
        if topology.layer_of(service.me.node_id) is not None
        for entropy in sender_entropies(list(service.observations), args.mean_delay_ms / 1000)
    ]
    latencies_ms = sorted(1000 * x for x in latencies)

    def pct(p: float) -> float:
        return round(latencies_ms[min(len(latencies_ms) - 1, int(p * len(latencies_ms)))], 1)

    return {
        "messages": args.messages,
        "delivered": len(latencies_ms),
        "mean_delay_ms_per_hop": args.mean_delay_ms,
        "expected_mixing_mean_ms": 5 * args.mean_delay_ms,
        "expected_send_wait_mean_ms": round(1000 / args.send_rate, 1),
        "latency_mean_ms": round(statistics.fmean(latencies_ms), 1),
        "latency_p50_ms": pct(0.5),
        "latency_p90_ms": pct(0.9),
        "latency_p99_ms": pct(0.99),
        "link_frame_bytes": 2474,
        "one_mix_observer_entropy_bits": round(statistics.fmean(entropies), 2),
        "one_mix_anonymity_set": round(2 ** statistics.fmean(entropies), 1),
        "packets_per_s_through_a_mix": round(len(entropies) / elapsed / 6, 1),
    }


def sender_entropies(observations: list[Observation], mean_s: float) -> list[float]:
    """Per packet leaving the node: the entropy (bits) of which arrival it was."""
    arrivals = sorted(o.at for o in observations)
    result = []
    for out in observations:
        if out.outcome != "forward" or out.delay_ms is None:
            continue
        left = out.at + out.delay_ms / 1000
        weights = [math.exp(-(left - t) / mean_s) for t in arrivals if 0 <= left - t <= 20 * mean_s]
        total = sum(weights)
        result.append(-sum(w / total * math.log2(w / total) for w in weights if w > 0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--mean-delay-ms", type=float, default=20.0)
    parser.add_argument("--send-rate", type=float, default=50.0)
    args = parser.parse_args()
    topology, keys, sockets = network()
    for sock in sockets:
        sock.close()
    log("hop processing and client build")
    result: dict[str, object] = {"cpu": processing(topology, keys, args)}
    log("end-to-end latency on loopback")
    result["latency"] = asyncio.run(latency(args))
    result["python"] = platform.python_version()
    result["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
