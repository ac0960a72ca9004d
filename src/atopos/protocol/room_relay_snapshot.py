"""One room's relay state as bytes, so that several nodes can share it (issue 22).

A node that keeps its rooms in a shared store (server/rooms/redis_relays.py) loads the
state, applies one event of `RelayRoom`'s table and stores the result. The encoding is
MessagePack of every field of `RelayRoom` (msgspec, typed on the way back): it is read only
by nodes of the same version, never by clients. Loading does not run `RelayRoom`'s
`__post_init__`, which sets up a *new* room (its invites and its empty-since time).

The roster, the largest part (500 members: about 200 KB), is stored as plain arrays: its
entries were checked when they arrived as frames, and checking every pattern again on each
load would cost milliseconds per event.
"""

from __future__ import annotations

import dataclasses

import msgspec

from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_relay import (
    EndReason,
    RelayLimits,
    RelayRoom,
    RoomState,
    _Connection,
    _Pending,
)
from atopos.protocol.room_wire import JoinItem, RosterItem

__all__ = ["dump_room", "load_room"]


class _Snapshot(msgspec.Struct, array_like=True):
    """The fields of `RelayRoom`, in its order (a unit test holds the two together)."""

    creation: RoomCreation
    created_at: float
    limits: RelayLimits
    state: RoomState
    seq: int
    epoch: int
    next_index: int
    roster: dict[int, tuple[int, str, str, str, str]]
    queued_joins: list[JoinItem]
    queued_leaves: list[int]
    knocks: dict[int, JoinItem]
    pending: _Pending | None
    invites: dict[str, str]
    connections: dict[int, _Connection]
    empty_since: float | None
    closing_until: float
    end_reason: EndReason


_FIELDS = tuple(field.name for field in dataclasses.fields(RelayRoom))
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Snapshot)


def dump_room(room: RelayRoom) -> bytes:
    """Every field of `room`, encoded."""
    values = {name: getattr(room, name) for name in _FIELDS}
    values["roster"] = {
        index: (item.index, item.identity, item.sign_key, item.seal_key, item.profile)
        for index, item in room.roster.items()
    }
    return _encoder.encode(_Snapshot(**values))


def load_room(data: bytes) -> RelayRoom:
    """The room `dump_room` encoded; msgspec.ValidationError/DecodeError for other bytes."""
    snapshot = _decoder.decode(data)
    room = RelayRoom.__new__(RelayRoom)
    for name in _FIELDS:
        setattr(room, name, getattr(snapshot, name))
    room.roster = {index: RosterItem(*fields) for index, fields in snapshot.roster.items()}
    return room
