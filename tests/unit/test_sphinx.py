"""Sphinx packets (docs/protocol/sphinx.md): the vectors of tests/vectors/sphinx/, which a
second implementation of the spec wrote, and the properties a mix node relies on."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from atopos.crypto import sphinx
from atopos.crypto.sphinx import (
    HEADER_BYTES,
    MAX_HOPS,
    MESSAGE_BYTES,
    PACKET_BYTES,
    Deliver,
    DeliverReply,
    Hop,
    InvalidPacket,
    Relay,
    Surb,
    SurbSecrets,
    create_forward_packet,
    create_reply_packet,
    create_surb,
    open_reply,
    process_packet,
)
from atopos.crypto.sphinx_lioness import lioness_decrypt, lioness_encrypt

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sphinx"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sphinx_gen", VECTORS / "generate_sphinx_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def _route(vector: Any) -> tuple[list[Hop], list[X25519PrivateKey]]:
    hops = [
        Hop(bytes.fromhex(h["public"]), bytes.fromhex(h["address"]), h["delay_ms"])
        for h in vector["route"]
    ]
    keys = [
        X25519PrivateKey.from_private_bytes(bytes.fromhex(h["private"])) for h in vector["route"]
    ]
    return hops, keys


def _check_hops(vector: Any, keys: list[X25519PrivateKey]) -> Relay | Deliver | DeliverReply:
    packet = bytes.fromhex(vector["hops"][0]["packet_in"])
    result: Relay | Deliver | DeliverReply | None = None
    for hop, key in zip(vector["hops"], keys, strict=True):
        assert packet.hex() == hop["packet_in"]
        assert len(packet) == PACKET_BYTES
        result = process_packet(key, packet)
        assert result.replay_tag.hex() == hop["replay_tag"]
        if isinstance(result, Relay):
            assert hop["command"] == 1
            assert result.next_address.hex() == hop["address"]
            assert result.delay_ms == hop["delay_ms"]
            assert result.packet.hex() == hop["packet_out"]
            packet = result.packet
    assert result is not None
    return result


def test_vectors_are_current() -> None:
    for name, text in GEN.build().items():
        assert (VECTORS / name).read_text() == text, name


@pytest.mark.parametrize("case", ["3_hops", "5_hops"])
def test_forward_vectors(case: str) -> None:
    vector = _load("forward.json")[case]
    route, keys = _route(vector)
    recipient, message = bytes.fromhex(vector["recipient"]), bytes.fromhex(vector["message"])
    packet = create_forward_packet(route, recipient, message, GEN.Stream(vector["random_label"]))
    assert packet.hex() == vector["hops"][0]["packet_in"]
    result = _check_hops(vector, keys)
    assert isinstance(result, Deliver)
    assert result.address == recipient
    assert result.message == message
    assert vector["hops"][-1]["payload_out"] == (bytes(16) + message).hex()


def test_surb_vectors_round_trip() -> None:
    vector = _load("surb.json")
    route, keys = _route(vector)
    surb, secrets = create_surb(route, bytes.fromhex(vector["surb_id"]), GEN.Stream("surb"))
    assert surb.header.hex() == vector["header"]
    assert surb.payload_key.hex() == vector["payload_key"]
    assert surb.first_address == route[0].address
    assert [k.hex() for k in secrets.hop_payload_keys] == vector["hop_payload_keys"]
    message = bytes.fromhex(vector["message"])
    first, packet = create_reply_packet(surb, message)
    assert first == route[0].address
    assert packet.hex() == vector["hops"][0]["packet_in"]
    result = _check_hops(vector, keys)
    assert isinstance(result, DeliverReply)
    assert result.surb_id.hex() == vector["surb_id"]
    assert result.payload.hex() == vector["hops"][-1]["payload_out"]
    assert open_reply(secrets, result.payload) == message


def test_lioness_vectors() -> None:
    for case in _load("lioness.json"):
        key, plain = bytes.fromhex(case["key"]), bytes.fromhex(case["plaintext"])
        assert lioness_encrypt(key, plain).hex() == case["ciphertext"]
        assert lioness_decrypt(key, bytes.fromhex(case["ciphertext"])) == plain


def _flip(packet: bytes, index: int) -> bytes:
    return packet[:index] + bytes([packet[index] ^ 0x01]) + packet[index + 1 :]


@pytest.mark.parametrize("index", [0, 31, 32, 100, HEADER_BYTES - 33, HEADER_BYTES - 1])
def test_tampered_header_is_rejected_at_the_next_hop(index: int) -> None:
    vector = _load("forward.json")["5_hops"]
    _, keys = _route(vector)
    second = bytes.fromhex(vector["hops"][1]["packet_in"])
    process_packet(keys[1], second)
    with pytest.raises(InvalidPacket):
        process_packet(keys[1], _flip(second, index))


@pytest.mark.parametrize("index", [HEADER_BYTES, HEADER_BYTES + 40, PACKET_BYTES - 1])
def test_tampered_payload_fails_the_recipients_check(index: int) -> None:
    vector = _load("forward.json")["3_hops"]
    _, keys = _route(vector)
    packet = _flip(bytes.fromhex(vector["hops"][0]["packet_in"]), index)
    for key in keys[:-1]:
        result = process_packet(key, packet)
        assert isinstance(result, Relay)
        packet = result.packet
    with pytest.raises(InvalidPacket):
        process_packet(keys[-1], packet)


def test_tampered_reply_payload_fails_the_owners_check() -> None:
    vector = _load("surb.json")
    _, keys = _route(vector)
    packet = _flip(bytes.fromhex(vector["hops"][0]["packet_in"]), HEADER_BYTES + 5)
    result: Relay | Deliver | DeliverReply
    for key in keys:
        result = process_packet(key, packet)
        if isinstance(result, Relay):
            packet = result.packet
    assert isinstance(result, DeliverReply)
    secrets = SurbSecrets(
        bytes.fromhex(vector["surb_id"]),
        bytes.fromhex(vector["payload_key"]),
        tuple(bytes.fromhex(k) for k in vector["hop_payload_keys"]),
    )
    with pytest.raises(InvalidPacket):
        open_reply(secrets, result.payload)


def test_wrong_key_size_and_small_order_alpha_are_rejected() -> None:
    vector = _load("forward.json")["3_hops"]
    _, keys = _route(vector)
    packet = bytes.fromhex(vector["hops"][0]["packet_in"])
    for bad in (
        packet[:-1],
        packet + b"\0",
        bytes(32) + packet[32:],  # alpha of small order
        b"",
    ):
        with pytest.raises(InvalidPacket):
            process_packet(keys[0], bad)
    with pytest.raises(InvalidPacket):
        process_packet(keys[1], packet)  # not this node's packet


def test_a_replayed_packet_has_the_same_replay_tag() -> None:
    vector = _load("forward.json")["5_hops"]
    _, keys = _route(vector)
    packet = bytes.fromhex(vector["hops"][0]["packet_in"])
    first, again = process_packet(keys[0], packet), process_packet(keys[0], packet)
    assert first.replay_tag == again.replay_tag
    other = bytes.fromhex(_load("forward.json")["3_hops"]["hops"][0]["packet_in"])
    assert process_packet(keys[0], other).replay_tag != first.replay_tag
    tags = {hop["replay_tag"] for hop in vector["hops"]}
    assert len(tags) == len(vector["hops"])


def test_a_hop_learns_only_the_next_address_and_the_delay() -> None:
    vector = _load("forward.json")["5_hops"]
    _, keys = _route(vector)
    later = [bytes.fromhex(h["address"]) for h in vector["route"][2:]]
    later.append(bytes.fromhex(vector["recipient"]))
    result = process_packet(keys[0], bytes.fromhex(vector["hops"][0]["packet_in"]))
    assert isinstance(result, Relay)
    assert [f.name for f in dataclasses.fields(Relay)] == [
        "next_address",
        "delay_ms",
        "packet",
        "replay_tag",
    ]
    assert result.next_address.hex() == vector["route"][1]["address"]
    assert result.delay_ms == vector["route"][0]["delay_ms"]
    # Nothing further down the route is readable in what the hop forwards.
    for address in later:
        assert address not in result.packet
    assert bytes.fromhex(vector["message"])[:32] not in result.packet


def _node_keys(count: int) -> list[X25519PrivateKey]:
    return [X25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(count)]


NODES = _node_keys(MAX_HOPS)


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, MAX_HOPS),
    delays=st.lists(st.integers(0, 2**32 - 1), min_size=MAX_HOPS, max_size=MAX_HOPS),
    message=st.binary(min_size=MESSAGE_BYTES, max_size=MESSAGE_BYTES),
    reply=st.booleans(),
)
def test_random_routes_round_trip(
    length: int, delays: list[int], message: bytes, reply: bool
) -> None:
    keys = NODES[:length]
    route = [
        Hop(k.public_key().public_bytes_raw(), bytes([i]) * 32, delays[i])
        for i, k in enumerate(keys)
    ]
    final = b"F" * 32
    surb: Surb | None = None
    if reply:
        surb, secrets = create_surb(route, final, os.urandom)
        _, packet = create_reply_packet(surb, message)
    else:
        packet = create_forward_packet(route, final, message, os.urandom)
    for index, key in enumerate(keys):
        assert len(packet) == PACKET_BYTES
        result = process_packet(key, packet)
        if index < length - 1:
            assert isinstance(result, Relay)
            assert result.next_address == route[index + 1].address
            assert result.delay_ms == delays[index]
            packet = result.packet
    if reply:
        assert isinstance(result, DeliverReply)
        assert result.surb_id == final
        assert open_reply(secrets, result.payload) == message
    else:
        assert isinstance(result, Deliver)
        assert result.address == final
        assert result.message == message


def test_bad_routes_are_refused_by_the_sender() -> None:
    key = NODES[0].public_key().public_bytes_raw()
    message = bytes(MESSAGE_BYTES)
    with pytest.raises(ValueError, match="hops"):
        create_forward_packet([], b"F" * 32, message, os.urandom)
    with pytest.raises(ValueError, match="hops"):
        create_forward_packet([Hop(key, b"a" * 32, 0)] * 6, b"F" * 32, message, os.urandom)
    with pytest.raises(ValueError, match="delay"):
        create_forward_packet([Hop(key, b"a" * 32, -1)], b"F" * 32, message, os.urandom)
    with pytest.raises(ValueError, match="exactly"):
        create_forward_packet([Hop(key, b"a" * 32, 0)], b"F" * 32, message[:-1], os.urandom)


def test_a_second_reply_on_the_same_surb_has_the_same_replay_tag() -> None:
    keys = NODES[:3]
    route = [Hop(k.public_key().public_bytes_raw(), bytes([i]) * 32, 0) for i, k in enumerate(keys)]
    surb, _ = create_surb(route, b"S" * 32, os.urandom)
    _, first = create_reply_packet(surb, b"a" * MESSAGE_BYTES)
    _, second = create_reply_packet(surb, b"b" * MESSAGE_BYTES)
    assert first != second
    assert process_packet(keys[0], first).replay_tag == process_packet(keys[0], second).replay_tag


def test_one_exchange_per_hop_gives_the_chained_x25519_secrets() -> None:
    """The sender's shortcut (the product of clamped scalars modulo the group order, applied
    once) must equal chaining one X25519 exchange per earlier blinding, hop by hop."""
    for _ in range(200):
        ephemeral = os.urandom(32)
        keys_of = [X25519PrivateKey.generate().public_key() for _ in range(sphinx.MAX_HOPS)]
        route = [
            sphinx.Hop(public_key=key.public_bytes_raw(), address=bytes(32), delay_ms=0)
            for key in keys_of
        ]
        _, keys = sphinx._shared_secrets(route, ephemeral)
        for index, key in enumerate(keys_of):
            chained = sphinx._chained_exchange(ephemeral, [k.blinding for k in keys[:index]], key)
            assert sphinx._hop_keys(chained) == keys[index]
