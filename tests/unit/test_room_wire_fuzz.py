"""Room frame parsers and the member state machine under hypothesis: whatever arrives, the
only exception is `RoomProtocolError` (never a crash, an assertion or a key error)."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.rooms_support import open_room

from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_member import RoomMember
from atopos.protocol.room_wire import (
    RelayedMessage,
    b64,
    decode_client_frame,
    decode_relay_frame,
    encode_frame,
)

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _session() -> tuple[list[str], list[str], RoomMember]:
    """A recorded knock-mode session: what members sent, what the relay sent, and bob."""
    room = open_room("alice", "bob", knock=True, invites=1)
    room.members["alice"].member.admit(1)
    room.relay.pump()
    room.join("carol")
    room.say("alice", "hello")
    room.say("bob", "hi")
    room.members["bob"].member.update(0)
    room.relay.pump()
    client = [t for t in room.relay.seen if t not in room.relay.fanned]
    return client, list(room.relay.fanned), copy.deepcopy(room.members["bob"].member)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def _mutated(draw: st.DrawFn, frames: list[str]) -> str:
    text = draw(st.sampled_from(frames))
    document = json.loads(text)
    how = draw(st.sampled_from(["replace", "delete", "add", "char", "truncate", "nest"]))
    keys = sorted(document)
    if how == "replace":
        document[draw(st.sampled_from(keys))] = draw(_json_values)
    elif how == "delete":
        del document[draw(st.sampled_from(keys))]
    elif how == "add":
        document[draw(st.text(max_size=10))] = draw(_json_values)
    elif how == "nest":
        key = draw(st.sampled_from(keys))
        if isinstance(document[key], list) and document[key]:
            index = draw(st.integers(0, len(document[key]) - 1))
            item = document[key][index]
            if isinstance(item, dict) and item:
                item[draw(st.sampled_from(sorted(item)))] = draw(_json_values)
    else:
        position = draw(st.integers(0, len(text) - 1))
        if how == "truncate":
            return text[:position]
        return text[:position] + draw(st.characters()) + text[position + 1 :]
    return json.dumps(document, separators=(",", ":"))


@_FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parsers_refuse_noise_with_their_own_error(data: str | bytes) -> None:
    for decode in (decode_client_frame, decode_relay_frame):
        with contextlib.suppress(RoomProtocolError):
            decode(data)


@_FUZZ
@given(st.data())
def test_parsers_refuse_mutated_frames_with_their_own_error(data: st.DataObject) -> None:
    client, relay, _ = _session()
    for frames, decode in ((client, decode_client_frame), (relay, decode_relay_frame)):
        text = data.draw(_mutated(frames))
        try:
            frame = decode(text)
        except RoomProtocolError:
            continue
        assert decode(encode_frame(frame)) == frame  # what parses, round-trips


@_FUZZ
@given(st.data())
def test_an_active_member_fed_hostile_frames_raises_only_protocol_errors(
    data: st.DataObject,
) -> None:
    _, relay, bob = _session()
    member = copy.deepcopy(bob)
    for _ in range(3):
        text = data.draw(_mutated(relay) | st.sampled_from(relay))
        try:
            document = json.loads(text)
            if isinstance(document, dict) and isinstance(document.get("seq"), int):
                document["seq"] = member._last_seq + 1  # get past the sequence check
                text = json.dumps(document, separators=(",", ":"))
        except (ValueError, TypeError):
            pass
        with contextlib.suppress(RoomProtocolError):
            member.receive(text, 0)
    for command in (lambda: member.send_text("still here"), lambda: member.update(1)):
        with contextlib.suppress(RoomProtocolError):
            command()


@_FUZZ
@given(
    epoch=st.integers(0, 2**53 - 1),
    sender=st.integers(0, 2**32 - 1),
    counter=st.integers(0, 2**53 - 1),
    ct=st.binary(min_size=528, max_size=2000),
    sig=st.binary(min_size=64, max_size=64),
    seq=st.integers(0, 2**53 - 1),
)
def test_message_frames_round_trip(
    epoch: int, sender: int, counter: int, ct: bytes, sig: bytes, seq: int
) -> None:
    frame = RelayedMessage(
        seq=seq, epoch=epoch, sender=sender, counter=counter, ct=b64(ct), sig=b64(sig)
    )
    assert decode_relay_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize("decode", [decode_client_frame, decode_relay_frame])
def test_a_lone_surrogate_is_a_malformed_frame(decode: Callable[[str], object]) -> None:
    # A str may hold one (the WebSocket layer never delivers it, but the decoder takes str).
    with pytest.raises(RoomProtocolError) as refused:
        decode('{"type":"error","code":"\ud800"}')
    assert refused.value.code == "malformed"
