"""The port that holds the relay state of a node's rooms, and applies the relay's events.

Two adapters: `RoomRegistry` (server/rooms/registry.py) keeps each `RelayRoom` in this
process's RAM; `RedisRoomRelays` (server/rooms/redis_relays.py) keeps them in the room
Redis, shared by every node, and applies each event atomically there (issue 22). The
socket and the ticker speak only this port: they hand `step` an event of the relay's table
(`RelayRoom.open`, `receive`, `closed`, `tick`) and carry out the actions it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_relay import Action, RelayRoom
from atopos.server.identity import ClientId
from atopos.server.rooms.limits import RoomNodeLimits

__all__ = ["RoomEvent", "RoomRelays"]

# One event of the relay's table applied to a room; returns the relay's actions. It may run
# more than once on a shared store (each time on the freshest state), so it must not have
# effects of its own.
RoomEvent = Callable[[RelayRoom], list[Action]]


class RoomRelays(Protocol):
    limits: RoomNodeLimits

    async def start(self) -> None:
        """Begin the adapter's own work (heartbeats, subscriptions)."""
        ...

    async def stop(self) -> None: ...

    def check(self) -> None:
        """Raise Unavailable while rooms cannot be served (the health check)."""
        ...

    async def has_room(self, room_key: str) -> bool:
        """Whether a room with this id is held (anywhere, for a shared store)."""
        ...

    async def create(self, creation: RoomCreation, client: ClientId, now: float) -> RelayRoom:
        """Hold a new room; RoomIdTaken when its id is in use, Unavailable, RateLimited."""
        ...

    async def spend_challenge(self, challenge_id: bytes, expires_at: float, now: float) -> None:
        """One solved challenge creates one room (Refused when spent)."""
        ...

    async def step(self, room_key: str, event: RoomEvent) -> list[Action] | None:
        """Apply `event` to the room; the actions left for the caller to carry out, or None
        when the room is not held. An adapter that delivers the actions itself (through
        its bus) returns an empty list."""
        ...

    async def tick_rooms(self, now: float) -> list[tuple[str, list[Action]]]:
        """Fire the deadlines of the rooms this node looks after; actions per room."""
        ...

    def wipe(self, room_key: str) -> None:
        """The relay said WipeRoom: forget the room here."""
        ...

    def next_connection(self) -> int:
        """A connection id no other connection of any room holds."""
        ...

    def open_connection(self, client: ClientId) -> None: ...

    def close_connection(self, client: ClientId) -> None: ...

    def open_connections(self) -> int: ...
