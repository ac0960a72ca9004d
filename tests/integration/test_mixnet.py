"""The mixnet on loopback (issue 23): 3 layers x 2 mix nodes and 2 gateways, each behind a
tap that sees what a wire observer sees, with clients sending through it."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from atopos.crypto.sphinx import Hop, create_forward_packet
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.settings import ClientSettings
from atopos.protocol.mix_link import FRAME_BYTES, FrameKind, PacketFrame, encode_frame
from atopos.protocol.mix_message import MessageKind, seal_message
from tests.mixnet_support import Lab

CHATTY = ClientSettings(send_rate=40.0, loop_rate=5.0, mean_delay_ms=5.0, loop_timeout=2.0)


async def _clients(
    lab: Lab, settings: ClientSettings = CHATTY
) -> tuple[MixnetClient, MixnetClient]:
    return await lab.new_client("GA", settings), await lab.new_client("GB", settings)


async def _receive(client: MixnetClient, count: int, seconds: float = 20.0) -> list[bytes]:
    return [await asyncio.wait_for(client.receive(), seconds) for _ in range(count)]


def test_two_clients_exchange_messages_through_three_layers(mixnet_lab: Lab) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        alice, bob = await _clients(mixnet_lab)
        try:
            for i in range(10):
                alice.send(bob.address, b"to bob %d" % i)
                bob.send(alice.address, b"to alice %d" % i)
            return await _receive(bob, 10), await _receive(alice, 10)
        finally:
            await alice.close()
            await bob.close()

    at_bob, at_alice = mixnet_lab.run(scenario())
    assert sorted(at_bob) == sorted(b"to bob %d" % i for i in range(10))
    assert sorted(at_alice) == sorted(b"to alice %d" % i for i in range(10))
    for node_id, service in mixnet_lab.services.items():
        assert service.counters["received"] > 0, mixnet_lab.name(node_id)


def _quiet(lab: Lab) -> None:
    """Wait until no node holds a packet (cover keeps flowing, so wait for a gap)."""

    async def gap() -> None:
        for _ in range(200):
            if all(not s._pending for s in lab.services.values()):
                return
            await asyncio.sleep(0.005)

    lab.run(gap())


def test_every_frame_on_every_link_has_the_same_size(mixnet_lab: Lab) -> None:
    test_two_clients_exchange_messages_through_three_layers(mixnet_lab)
    time.sleep(0.3)
    streams = [s for tap in mixnet_lab.taps.values() for s in tap.streams]
    assert len(streams) >= 16
    checked = 0
    for _ in range(50):
        _quiet(mixnet_lab)
        partial = [s for s in streams if s.byte_count % FRAME_BYTES]
        if not partial:
            break
        time.sleep(0.01)
    assert [(s.node, s.direction, s.byte_count) for s in partial] == []
    for stream in streams:
        assert len(stream.kinds) == stream.byte_count // FRAME_BYTES
        if stream.direction == "in":
            # Into a node: packets, and a client's one mailbox opening at a gateway.
            assert set(stream.kinds) <= {FrameKind.PACKET, FrameKind.MAILBOX_OPEN}
            assert stream.kinds.count(FrameKind.MAILBOX_OPEN) <= 1
        else:
            # Out of a node on an inbound connection: only a gateway's mail to its client.
            assert set(stream.kinds) <= {FrameKind.MAIL}
        checked += len(stream.kinds)
    assert checked > 100


def _raw_send(lab: Lab, gateway: str, frames: list[bytes]) -> None:
    node = lab.node(gateway)

    async def send() -> None:
        _, writer = await asyncio.open_connection(node.host, node.port)
        for frame in frames:
            writer.write(frame)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    lab.run(send())


def _route(lab: Lab, names: list[str]) -> list[Hop]:
    return [Hop(node.public_key, node.node_id, 1) for node in (lab.node(name) for name in names)]


def test_a_replayed_packet_is_dropped(mixnet_lab: Lab) -> None:
    async def scenario() -> tuple[list[bytes], MixnetClient]:
        bob = await mixnet_lab.new_client("GB", CHATTY)
        return [], bob

    _, bob = mixnet_lab.run(scenario())
    try:
        route = _route(mixnet_lab, ["GA", "L1a", "L2b", "L3a", "GB"])
        message = seal_message(bob.address, MessageKind.DATA, b"once", os.urandom)
        packet = create_forward_packet(route, bob.address.mailbox_id, message, os.urandom)
        gateway = mixnet_lab.services[mixnet_lab.node("GA").node_id]
        replays_before = gateway.counters["dropped replay"]
        frame = encode_frame(PacketFrame(packet))
        _raw_send(mixnet_lab, "GA", [frame, frame, frame])
        assert mixnet_lab.run(_receive(bob, 1)) == [b"once"]
        with pytest.raises(TimeoutError):
            mixnet_lab.run(_receive(bob, 1, seconds=1.0))
        assert gateway.counters["dropped replay"] == replays_before + 2
    finally:
        mixnet_lab.run(bob.close())


def test_a_tampered_packet_is_dropped_at_the_next_hop(mixnet_lab: Lab) -> None:
    l2 = mixnet_lab.node("L2a")
    service = mixnet_lab.services[l2.node_id]
    tap = mixnet_lab.taps[l2.node_id]
    before = service.counters["dropped invalid"]
    # The next frame into L2a gets one header bit flipped on the wire from layer 1.
    tap.tamper_at = 1 + 100
    deadline = time.monotonic() + 10
    while tap.tamper_at is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert tap.tamper_at is None
    assert service.counters["dropped invalid"] == before + 1


def test_a_node_learns_only_its_predecessor_and_successor(mixnet_lab: Lab) -> None:
    async def start() -> MixnetClient:
        return await mixnet_lab.new_client("GB", CHATTY)

    bob = mixnet_lab.run(start())
    try:
        names = ["GA", "L1b", "L2a", "L3b", "GB"]
        route = _route(mixnet_lab, names)
        message = seal_message(bob.address, MessageKind.DATA, b"traced", os.urandom)
        packet = create_forward_packet(route, bob.address.mailbox_id, message, os.urandom)
        marks = {
            n: len(mixnet_lab.services[mixnet_lab.node(n).node_id].observations) for n in names
        }
        _raw_send(mixnet_lab, "GA", [encode_frame(PacketFrame(packet))])
        assert mixnet_lab.run(_receive(bob, 1)) == [b"traced"]
    finally:
        mixnet_lab.run(bob.close())
    everything = {mixnet_lab.node(n).node_id for n in names} | {bob.address.mailbox_id}
    for index, name in enumerate(names):
        service = mixnet_lab.services[mixnet_lab.node(name).node_id]
        seen = list(service.observations)[marks[name] :]
        successor = route[index + 1].address if index + 1 < len(route) else bob.address.mailbox_id
        mine = [o for o in seen if o.next_hop == successor]
        assert mine, name
        origins = {mixnet_lab.origin(mixnet_lab.node(name), o.predecessor) for o in mine}
        assert (names[index - 1] if index else "client") in origins, (name, origins)
        # What the node saw names its successor and nothing else on the route.
        for observation in mine:
            assert set(vars_of(observation)) & everything == {successor}


def vars_of(observation: object) -> list[bytes]:
    return [
        v for v in (getattr(observation, f) for f in observation.__slots__) if isinstance(v, bytes)
    ]  # type: ignore[attr-defined]


def _frames_in(lab: Lab, client: MixnetClient, start: float, end: float) -> int:
    """Packets the gateway's tap saw from this client's connection in [start, end)."""
    tap = lab.taps[client.gateway.node_id]
    local = client.local_address
    streams = [s for s in tap.streams if s.direction == "in" and s.peer == local]
    assert len(streams) == 1
    return sum(start <= t < end for t in streams[0].frame_times)


def test_a_clients_send_rate_is_the_same_idle_and_chatting(mixnet_lab: Lab) -> None:
    window = 6.0
    settings = ClientSettings(send_rate=25.0, loop_rate=5.0, mean_delay_ms=5.0)

    async def scenario() -> tuple[int, int, int, float]:
        alice, bob = await _clients(mixnet_lab, settings)
        try:
            idle_start = time.monotonic()
            await asyncio.sleep(window)
            chat_start = time.monotonic()
            sent = 0
            while time.monotonic() < chat_start + window:
                while alice.queued < 20:
                    alice.send(bob.address, b"chat %d" % sent)
                    sent += 1
                await asyncio.sleep(0.05)
            chat_end = time.monotonic()
            await asyncio.sleep(0.2)
            idle = _frames_in(mixnet_lab, alice, idle_start, chat_start)
            chatting = _frames_in(mixnet_lab, alice, chat_start, chat_end)
            return idle, chatting, bob._inbox.qsize(), chat_end - chat_start
        finally:
            await alice.close()
            await bob.close()

    idle, chatting, delivered, chat_seconds = mixnet_lab.run(scenario())
    expected = (settings.send_rate + settings.loop_rate) * window
    # Poisson counts of mean 180: a standard deviation of 13.4; the tolerance, 30 % (54
    # packets), is 4 of them for one window and 2.8 for the difference of two.
    assert abs(idle - expected) <= 0.3 * expected, (idle, expected)
    assert abs(chatting - expected * chat_seconds / window) <= 0.3 * expected, chatting
    assert abs(idle - chatting) <= 0.3 * expected, (idle, chatting)
    # While chatting, most send slots carried data (the rest of the rate is loops).
    assert delivered >= 0.6 * settings.send_rate * window


def test_a_killed_node_is_routed_around(mixnet_lab: Lab) -> None:
    victim, neighbour = mixnet_lab.node("L2a"), mixnet_lab.node("L2b")
    settings = ClientSettings(
        send_rate=30.0, loop_rate=20.0, mean_delay_ms=5.0, loop_timeout=1.0, suspect_for=60.0
    )

    async def scenario() -> tuple[set[bytes], list[bytes]]:
        alice, bob = await _clients(mixnet_lab, settings)
        try:
            await mixnet_lab.stop_node(victim)
            deadline = time.monotonic() + 10
            # Suspected, and more than its layer neighbour (whose loops come back).
            while time.monotonic() < deadline:
                suspects = alice.suspects
                if suspects.get(victim.node_id, 0) > suspects.get(neighbour.node_id, 0):
                    break
                await asyncio.sleep(0.05)
            suspects = set(alice.suspects)
            for i in range(20):
                alice.send(bob.address, b"after %d" % i)
            # The first lost messages may have been in flight; these all arrive.
            got: list[bytes] = []
            while len([m for m in got if m.startswith(b"after")]) < 20:
                got.append(await asyncio.wait_for(bob.receive(), 10))
            return suspects, got
        finally:
            await alice.close()
            await bob.close()
            await mixnet_lab.start_node(victim)

    suspects, got = mixnet_lab.run(scenario(), timeout=60)
    assert victim.node_id in suspects
    assert sorted(m for m in got if m.startswith(b"after")) == sorted(
        b"after %d" % i for i in range(20)
    )
