"""Every room a node holds, in RAM only, with the node-wide caps around them.

Rooms are keyed by their base64url id. Nothing here is ever written anywhere: a restart
forgets every room, which is the promise (docs/protocol/rooms.md section 12). This is the
one-node adapter of the `RoomRelays` port (server/rooms/relays.py); the node-wide caps
(connections per client, creations per hour) are reused by the Redis adapter.
"""

from __future__ import annotations

from collections import deque

from atopos.errors import Gone, InvalidInput, RateLimited, Refused, Unavailable
from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_relay import Action, RelayRoom
from atopos.server.identity import ClientId
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.server.rooms.relays import RoomEvent

__all__ = ["RoomIdTaken", "RoomRegistry"]

_HOUR = 3600.0


class RoomRegistry:
    def __init__(self, limits: RoomNodeLimits) -> None:
        self.limits = limits
        self.rooms: dict[str, RelayRoom] = {}
        self._created: dict[str, deque[float]] = {}
        self._connections: dict[str, int] = {}
        self._spent_challenges: dict[bytes, float] = {}
        self._next_connection = 0

    async def start(self) -> None:
        """RAM only: nothing to start."""

    async def stop(self) -> None:
        """RAM only: nothing to stop."""

    def check(self) -> None:
        """RAM only: never down."""

    async def has_room(self, room_key: str) -> bool:
        return room_key in self.rooms

    async def step(self, room_key: str, event: RoomEvent) -> list[Action] | None:
        room = self.rooms.get(room_key)
        return None if room is None else event(room)

    async def tick_rooms(self, now: float) -> list[tuple[str, list[Action]]]:
        ticked = [(room_key, room.tick(now)) for room_key, room in list(self.rooms.items())]
        self.sweep(now)
        return ticked

    async def create(self, creation: RoomCreation, client: ClientId, now: float) -> RelayRoom:
        """Hold a new room; Refused (409 by the caller) if its id is taken."""
        if creation.room_id in self.rooms:
            raise RoomIdTaken("That room id is in use; draw another.")
        if len(self.rooms) >= self.limits.max_rooms:
            raise Unavailable("This server holds as many rooms as it can; try later.")
        self.count_creation(client, now)
        room = RelayRoom(creation, created_at=now, limits=self.limits.relay)
        self.rooms[creation.room_id] = room
        return room

    def count_creation(self, client: ClientId, now: float) -> None:
        """Count one room created by `client`'s identifier (RateLimited past the hour's)."""
        times = self._created.setdefault(client.narrow, deque())
        while times and times[0] <= now - _HOUR:
            times.popleft()
        if len(times) >= self.limits.rooms_per_client_per_hour:
            retry = int(times[0] + _HOUR - now) + 1
            raise RateLimited("Too many rooms created from this address; wait.", retry)
        times.append(now)

    async def spend_challenge(self, challenge_id: bytes, expires_at: float, now: float) -> None:
        """One solved challenge creates one room, even after that room ended."""
        if challenge_id in self._spent_challenges:
            raise Refused("This challenge was already used; ask for a new one.")
        self._spent_challenges[challenge_id] = expires_at

    def room(self, room_id: str) -> RelayRoom:
        room = self.rooms.get(room_id)
        if room is None:
            raise Gone("No such room.")
        return room

    def wipe(self, room_id: str) -> None:
        self.rooms.pop(room_id, None)

    def next_connection(self) -> int:
        self._next_connection += 1
        return self._next_connection

    def open_connection(self, client: ClientId) -> None:
        """Count a room connection against its client identifier's cap."""
        count = self._connections.get(client.narrow, 0)
        if count >= self.limits.connections_per_client:
            raise RateLimited("Too many room connections from this address.", 60)
        self._connections[client.narrow] = count + 1

    def open_connections(self) -> int:
        """Room connections open on this node (every client identifier)."""
        return sum(self._connections.values())

    def close_connection(self, client: ClientId) -> None:
        count = self._connections.get(client.narrow, 0) - 1
        if count > 0:
            self._connections[client.narrow] = count
        else:
            self._connections.pop(client.narrow, None)

    def sweep(self, now: float) -> None:
        """Forget spent challenges past their expiry and idle creation counters."""
        for key in [k for k, until in self._spent_challenges.items() if until <= now]:
            del self._spent_challenges[key]
        for client in [k for k, t in self._created.items() if not t or t[-1] <= now - _HOUR]:
            del self._created[client]


class RoomIdTaken(InvalidInput):
    """A room id already held (answered 409: the client draws another)."""
