"""The relay's caps on a node (docs/protocol/rooms.md section 13, docs/operations.md)."""

from __future__ import annotations

import dataclasses

from atopos.protocol.room_relay import RelayLimits

__all__ = ["RoomNodeLimits"]


@dataclasses.dataclass(frozen=True, slots=True)
class RoomNodeLimits:
    """Per room (`relay`) and per node: rooms held, room connections per client identifier,
    rooms a client identifier may create per hour, frames and bytes queued for a slow reader
    (whichever is reached first; frames may be up to 1 MiB, so a frame cap alone would let
    one reader hold a gigabyte), and how long one send may take before the reader counts as
    stalled."""

    relay: RelayLimits = dataclasses.field(default_factory=RelayLimits)
    max_rooms: int = 10_000
    connections_per_client: int = 32
    rooms_per_client_per_hour: int = 30
    queued_frames_per_connection: int = 1024
    queued_bytes_per_connection: int = 4 * 1024 * 1024
    send_timeout_seconds: float = 10.0
    tick_seconds: float = 0.5
    creation_body_bytes: int = 65_536
