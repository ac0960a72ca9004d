"""The sans-I/O mix node (protocol/mix_node.py), link frames (protocol/mix_link.py) and
route choice (protocol/mix_route.py) on a 3 x 2 topology with real keys."""

from __future__ import annotations

import hashlib
import math
import os

import pytest
from tests.mixnet_support import KEY_EPOCH, make_testnet

from atopos.crypto.sphinx import MESSAGE_BYTES, PACKET_BYTES, Hop, create_forward_packet
from atopos.protocol.mix_link import (
    FRAME_BYTES,
    InvalidFrame,
    Mail,
    MailboxOpen,
    MailKind,
    PacketFrame,
    decode_frame,
    encode_frame,
)
from atopos.protocol.mix_node import (
    TRANSITIONS,
    Action,
    Dropped,
    DropReason,
    Forward,
    LoopHome,
    MixCore,
    Role,
    StoreMail,
)
from atopos.protocol.mix_route import choose_index, choose_route, exponential

NET = make_testnet(list(range(41000, 41008)))
TOPOLOGY = NET.topology
GATEWAY_A, GATEWAY_B = TOPOLOGY.gateways
MAILBOX = b"M" * 32
MESSAGE = bytes(range(256)) * 8


def _core(node_id: bytes, max_replay_tags: int = 1000) -> MixCore:
    role = Role.GATEWAY if TOPOLOGY.layer_of(node_id) is None else Role.MIX
    return MixCore(node_id, role, {KEY_EPOCH: NET.keys[node_id]}, TOPOLOGY, max_replay_tags)


def _route() -> list[Hop]:
    nodes = [GATEWAY_A, TOPOLOGY.layers[0][0], TOPOLOGY.layers[1][1], TOPOLOGY.layers[2][0]]
    nodes.append(GATEWAY_B)
    return [Hop(n.public_key, n.node_id, 10 + i) for i, n in enumerate(nodes)]


def test_a_packet_travels_gateway_three_layers_gateway_into_a_mailbox() -> None:
    route = _route()
    packet = create_forward_packet(route, MAILBOX, MESSAGE, os.urandom)
    for index, hop in enumerate(route[:-1]):
        outcome = _core(hop.address).receive(packet)
        assert isinstance(outcome, Forward)
        assert outcome.next_node.node_id == route[index + 1].address
        assert outcome.delay_ms == hop.delay_ms
        assert len(outcome.packet) == PACKET_BYTES
        packet = outcome.packet
    outcome = _core(GATEWAY_B.node_id).receive(packet)
    assert outcome == StoreMail(MailKind.MESSAGE, MAILBOX, MESSAGE, route[-1].delay_ms)


def test_a_replayed_packet_is_dropped_and_a_retired_epoch_forgets_its_tags() -> None:
    core = _core(GATEWAY_A.node_id)
    packet = create_forward_packet(_route(), MAILBOX, MESSAGE, os.urandom)
    assert isinstance(core.receive(packet), Forward)
    assert core.receive(packet) == Dropped(DropReason.REPLAY)
    assert core.replay_tag_count(KEY_EPOCH) == 1
    core.retire_epoch(KEY_EPOCH)
    assert core.replay_tag_count(KEY_EPOCH) == 0
    # Without the epoch's key the packet is not even readable any more.
    assert core.receive(packet) == Dropped(DropReason.INVALID)


def test_a_full_replay_store_fails_closed() -> None:
    core = _core(GATEWAY_A.node_id, max_replay_tags=1)
    assert isinstance(
        core.receive(create_forward_packet(_route(), MAILBOX, MESSAGE, os.urandom)), Forward
    )
    second = create_forward_packet(_route(), MAILBOX, MESSAGE, os.urandom)
    assert core.receive(second) == Dropped(DropReason.REPLAY_STORE_FULL)


@pytest.mark.parametrize("where", [0, 100, 500, PACKET_BYTES - 1])
def test_a_tampered_packet_is_dropped_at_the_next_hop(where: int) -> None:
    route = _route()
    packet = bytearray(create_forward_packet(route, MAILBOX, MESSAGE, os.urandom))
    packet[where] ^= 1
    # The header is checked by MAC at the first hop; a payload bit only shows at the end,
    # where the zero tag does not come back.
    outcome: object = _core(route[0].address).receive(bytes(packet))
    hops = 1
    while isinstance(outcome, Forward):
        outcome = _core(outcome.next_node.node_id).receive(outcome.packet)
        hops += 1
    assert outcome == Dropped(DropReason.INVALID)
    assert hops == (1 if where < 409 else len(route))


def test_a_mix_never_delivers_into_a_mailbox_and_unknown_next_hops_are_dropped() -> None:
    mix = TOPOLOGY.layers[0][0]
    to_mailbox = create_forward_packet(
        [Hop(mix.public_key, mix.node_id, 0)], MAILBOX, MESSAGE, os.urandom
    )
    assert _core(mix.node_id).receive(to_mailbox) == Dropped(DropReason.NOT_ALLOWED)
    stranger = [Hop(mix.public_key, mix.node_id, 0), Hop(mix.public_key, b"S" * 32, 0)]
    to_stranger = create_forward_packet(stranger, MAILBOX, MESSAGE, os.urandom)
    assert _core(mix.node_id).receive(to_stranger) == Dropped(DropReason.NOT_ALLOWED)


def test_a_nodes_own_loop_comes_home() -> None:
    mix = TOPOLOGY.layers[1][0]
    route = [TOPOLOGY.layers[2][1], GATEWAY_B, TOPOLOGY.layers[0][1], mix]
    hops = [Hop(n.public_key, n.node_id, 5) for n in route]
    packet = create_forward_packet(hops, mix.node_id, MESSAGE, os.urandom)
    outcome: object = _core(route[0].node_id).receive(packet)
    while isinstance(outcome, Forward):
        outcome = _core(outcome.next_node.node_id).receive(outcome.packet)
    assert outcome == LoopHome(MESSAGE, 5)


def test_the_table_lists_every_move_and_only_gateways_store_mail() -> None:
    assert {a for (role, _, _), a in TRANSITIONS.items() if role is Role.MIX} == {
        Action.FORWARD,
        Action.LOOP_HOME,
    }
    assert Action.STORE_MAIL in TRANSITIONS.values()


def test_link_frames_are_all_the_same_size_and_strict() -> None:
    packet = create_forward_packet(_route(), MAILBOX, MESSAGE, os.urandom)
    frames = [
        PacketFrame(packet),
        MailboxOpen(MAILBOX),
        Mail(MailKind.MESSAGE, MAILBOX, MESSAGE),
        Mail(MailKind.REPLY, MAILBOX, b""),
    ]
    for frame in frames:
        encoded = encode_frame(frame)
        assert len(encoded) == FRAME_BYTES
        assert decode_frame(encoded) == frame
    opened = bytearray(encode_frame(MailboxOpen(MAILBOX)))
    opened[-1] = 1
    bad = [bytes(opened), b"\x09" + packet, encode_frame(PacketFrame(packet))[:-1], b""]
    for data in bad:
        with pytest.raises(InvalidFrame):
            decode_frame(data)


class _Counter:
    def __init__(self) -> None:
        self.state = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            self.state += 1
            out += hashlib.sha256(self.state.to_bytes(8, "big")).digest()
        return out[:size]


def test_routes_take_one_node_per_layer_and_avoid_suspects() -> None:
    source = _Counter()
    suspect = TOPOLOGY.layers[1][0].node_id
    for _ in range(50):
        route = choose_route(TOPOLOGY, GATEWAY_A, GATEWAY_B, source, 50.0, {suspect: 1})
        assert route[0].address == GATEWAY_A.node_id
        assert route[-1].address == GATEWAY_B.node_id
        for layer, hop in zip(TOPOLOGY.layers, route[1:-1], strict=True):
            assert hop.address in {n.node_id for n in layer}
        assert route[2].address == TOPOLOGY.layers[1][1].node_id
    # A whole layer suspect: the least suspect node is taken.
    other = TOPOLOGY.layers[1][1].node_id
    for _ in range(20):
        route = choose_route(TOPOLOGY, GATEWAY_A, GATEWAY_B, source, 50.0, {suspect: 5, other: 1})
        assert route[2].address == other


def test_delays_are_exponential_with_the_asked_mean() -> None:
    source = _Counter()
    draws = [exponential(source, 50.0) for _ in range(20000)]
    mean = sum(draws) / len(draws)
    assert 48.0 < mean < 52.0
    # Exponential: P(X > mean) = 1/e.
    above = sum(d > 50.0 for d in draws) / len(draws)
    assert abs(above - math.exp(-1)) < 0.015
    counts = [0, 0, 0]
    for _ in range(3000):
        counts[choose_index(source, 3)] += 1
    assert all(900 < c < 1100 for c in counts)


def test_message_size_is_what_frames_carry() -> None:
    assert len(MESSAGE) == MESSAGE_BYTES
