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
  set;
- the sender entropy a global passive observer (every link, every node's ins and outs, with
  their times) has: `--observed-clients` clients, each sending real-looking packets at
  `--send-rate-observed` plus loops, through the same topology, for `--observe-seconds`.
  Every packet a node sends (forwarded or its own cover) gets the posterior over the
  node's arrivals as above; an arrival is the departure it matches on its link; a
  client's packet at its gateway is that client. For each packet a gateway hands to a
  mailbox, the entropy (bits) of the resulting distribution over the clients; the
  maximum is log2(clients). See "global_observer" in the output;
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
import bisect
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


Distribution = dict[str, float]  # sender label -> probability


async def global_observer(args: argparse.Namespace) -> dict[str, float]:
    """Run many clients through the real nodes, record every departure (a hook on each
    node's `_forward`: the observer sees packets leave) and every arrival (observations),
    then compute what an observer of all links infers about each delivered packet's sender."""
    topology, keys, sockets = network()
    node_settings = NodeSettings(
        mean_delay_ms=args.mean_delay_ms, loop_rate=1.0, drop_rate=1.0, record_observations=True
    )
    departures: list[tuple[float, bytes, bytes]] = []  # time, from node, to node
    services = []
    for node, sock in zip(topology.nodes(), sockets, strict=True):
        service = MixNodeService(
            node, {0: keys[node.node_id]}, topology, SystemClock(), os.urandom, node_settings
        )

        def hooked(
            target: MixNode,
            packet: bytes,
            me: bytes = node.node_id,
            forward: Callable[..., None] = service._forward,
        ) -> None:
            departures.append((time.monotonic(), me, target.node_id))
            forward(target, packet)

        service._forward = hooked  # type: ignore[method-assign]
        await service.start(sock)
        services.append(service)
    settings = ClientSettings(
        send_rate=args.send_rate_observed, loop_rate=1.0, mean_delay_ms=args.mean_delay_ms
    )
    clients = [
        MixnetClient(
            topology,
            topology.gateways[index % len(topology.gateways)],
            X25519PrivateKey.generate(),
            os.urandom(32),
            SystemClock(),
            os.urandom,
            settings,
        )
        for index in range(args.observed_clients)
    ]
    for client in clients:
        await client.start()
    await asyncio.sleep(args.observe_seconds)
    for client in clients:
        await client.close()
    for service in services:
        await service.close()
    client_links = {
        f"{c.local_address[0]}:{c.local_address[1]}": f"client {i}"
        for i, c in enumerate(clients)
        if c.local_address is not None
    }
    arrivals = {s.me.node_id: [(o.at, o) for o in s.observations] for s in services}
    entropies, matched_share = observer_entropies(
        arrivals, departures, client_links, args.mean_delay_ms / 1000
    )
    return {
        "clients": args.observed_clients,
        "client_send_rate": args.send_rate_observed,
        "seconds": args.observe_seconds,
        "mean_delay_ms_per_hop": args.mean_delay_ms,
        "delivered_packets_scored": len(entropies),
        "entropy_bits": round(statistics.fmean(entropies), 2) if entropies else 0.0,
        "entropy_p10_bits": round(sorted(entropies)[len(entropies) // 10], 2) + 0.0
        if entropies
        else 0.0,
        "arrivals_matched_to_a_departure": round(matched_share, 3),
        "max_bits": round(math.log2(args.observed_clients), 2),
        "anonymity_set": round(2 ** statistics.fmean(entropies), 1) if entropies else 0.0,
    }


def observer_entropies(
    arrivals: dict[bytes, list[tuple[float, Observation]]],
    departures: list[tuple[float, bytes, bytes]],
    client_links: dict[str, str],
    mean_s: float,
) -> tuple[list[float], float]:
    """The global observer's sender entropy for every packet a gateway stores as mail.

    Arrivals from a client's connection are that client; any other arrival at node B is
    matched, in order on the B side, to the first departure towards B not more than 50 ms
    before it (loopback: under a millisecond); a departure from A carries the posterior
    mix of A's earlier arrivals' distributions, weights exp(-(t_out - t_in) / mean).
    Also returns the share of the other arrivals so matched (1.0: every link followed)."""
    to_node: dict[bytes, list[float]] = {}
    for at, _, target in sorted(departures):
        to_node.setdefault(target, []).append(at)
    # (time, order at equal times, node, kind, what, observation): an arrival from a client
    # (what: its label), an arrival matched to a departure (what: its key), a departure
    # (what: its target) and a mail handed to a mailbox.
    events: list[tuple[float, int, bytes, str, object, Observation | None]] = []
    others = matched = 0
    for node_id, node_arrivals in arrivals.items():
        pending = to_node.get(node_id, [])
        cursor = 0
        for at, observation in sorted(node_arrivals, key=lambda pair: pair[0]):
            if observation.outcome == "mail" and observation.delay_ms is not None:
                left = at + observation.delay_ms / 1000
                events.append((left, 2, node_id, "mail", None, observation))
            label = client_links.get(observation.predecessor)
            if label is not None:
                events.append((at, 1, node_id, "client", label, observation))
                continue
            others += 1
            while cursor < len(pending) and pending[cursor] < at - 0.05:
                cursor += 1
            if cursor < len(pending) and pending[cursor] <= at:
                events.append((at, 1, node_id, "matched", (node_id, cursor), observation))
                cursor += 1
                matched += 1
    for at, source, target in sorted(departures):
        events.append((at, 0, source, "departure", target, None))
    events.sort(key=lambda e: (e[0], e[1]))
    departed: dict[tuple[bytes, int], Distribution] = {}
    sent_to: dict[bytes, int] = {}
    seen: dict[bytes, tuple[list[float], list[Distribution]]] = {}
    result: list[float] = []
    for at, _, node_id, kind, value, _observation in events:
        times, dists = seen.setdefault(node_id, ([], []))
        if kind == "departure":
            assert isinstance(value, bytes)
            index = sent_to.get(value, 0)
            sent_to[value] = index + 1
            departed[(value, index)] = posterior(times, dists, at, mean_s)
        elif kind == "mail":
            mail = posterior(times, dists, at, mean_s)
            if mail:
                result.append(-sum(p * math.log2(p) for p in mail.values() if p > 0))
        else:
            dist = {str(value): 1.0} if kind == "client" else departed.get(value, {})  # type: ignore[call-overload]
            if dist:
                times.append(at)
                dists.append(dist)
    return result, matched / others if others else 1.0


def posterior(
    times: list[float], dists: list[Distribution], left: float, mean_s: float
) -> Distribution:
    """The sender distribution of a packet leaving at `left`: its arrivals' mix."""
    start = bisect.bisect_left(times, left - 20 * mean_s)
    end = bisect.bisect_right(times, left)
    mixed: Distribution = {}
    total = 0.0
    for t, dist in zip(times[start:end], dists[start:end], strict=True):
        weight = math.exp(-(left - t) / mean_s)
        total += weight
        for sender, p in dist.items():
            mixed[sender] = mixed.get(sender, 0.0) + weight * p
    return {sender: p / total for sender, p in mixed.items()} if total else {}


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
    parser.add_argument("--observed-clients", type=int, default=16)
    parser.add_argument("--send-rate-observed", type=float, default=5.0)
    parser.add_argument("--observe-seconds", type=float, default=20.0)
    parser.add_argument(
        "--only-global-observer", action="store_true", help="Skip the other measurements."
    )
    args = parser.parse_args()
    topology, keys, sockets = network()
    for sock in sockets:
        sock.close()
    result: dict[str, object] = {}
    if not args.only_global_observer:
        log("hop processing and client build")
        result["cpu"] = processing(topology, keys, args)
        log("end-to-end latency on loopback")
        result["latency"] = asyncio.run(latency(args))
    log("global passive observer")
    result["global_observer"] = asyncio.run(global_observer(args))
    result["python"] = platform.python_version()
    result["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
