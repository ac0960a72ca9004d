"""The room channel's batches (server/rooms/redis_bus.py): every action of the relay
survives encoding, in order, and anything else on the channel is refused, not guessed at."""

from __future__ import annotations

import msgspec
import pytest

from atopos.protocol.room_relay import CloseConnection, SendText, WipeRoom
from atopos.server.rooms.redis_bus import channel_of, decode_actions, encode_actions
from atopos.server.rooms.redis_relays import state_key_of


def test_a_batch_comes_back_as_it_was_sent() -> None:
    actions = [
        SendText(((7 << 32) | 1, (9 << 32) | 2), '{"t":"msg"}'),
        CloseConnection((7 << 32) | 1, 4408),
        SendText((), "nobody"),
        WipeRoom(),
    ]
    assert decode_actions(encode_actions(actions)) == actions
    assert decode_actions(encode_actions([])) == []


@pytest.mark.parametrize(
    "batch",
    [b"", b"\xc1", msgspec.msgpack.encode([[3]]), msgspec.msgpack.encode([[0, [1], 5]])],
)
def test_anything_else_is_refused(batch: bytes) -> None:
    with pytest.raises(ValueError, match="not an action batch"):
        decode_actions(batch)


def test_a_rooms_state_and_channel_share_one_hash_tag() -> None:
    room = "AAECAwQFBgcICQoLDA0ODw"
    assert state_key_of(room) == b"atopos:room:{AAECAwQFBgcICQoLDA0ODw}"
    assert channel_of(room) == "atopos:room:{AAECAwQFBgcICQoLDA0ODw}:frames"
