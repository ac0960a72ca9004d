"""A room's relay state survives the trip through bytes whole (protocol/room_relay_snapshot.py):
every field of `RelayRoom` is in the snapshot, and a loaded room is the room that was
dumped, without `__post_init__` resetting its invites or its empty-since time."""

from __future__ import annotations

import dataclasses

from tests.rooms_support import SeededRandom

from atopos.protocol.room_creation import make_room
from atopos.protocol.room_relay import RelayRoom
from atopos.protocol.room_relay_snapshot import _Snapshot, dump_room, load_room


def test_the_snapshot_has_every_field_of_the_relay_room_in_order() -> None:
    assert _Snapshot.__struct_fields__ == tuple(f.name for f in dataclasses.fields(RelayRoom))


def test_a_loaded_room_is_the_dumped_room() -> None:
    new = make_room("https://rooms.example", SeededRandom("snapshot"), name="Plans", invites=2)
    room = RelayRoom(new.creation, created_at=1000.0)
    room.open((7 << 32) | 1, b"c" * 32, 1001.0)
    room.invites.pop(next(iter(room.invites)))  # one invite burnt
    room.empty_since = None
    room.seq, room.epoch = 41, 3
    loaded = load_room(dump_room(room))
    assert dataclasses.asdict(loaded) == dataclasses.asdict(room)
    assert len(loaded.invites) == 1
    assert loaded.empty_since is None
    assert dump_room(loaded) == dump_room(room)
