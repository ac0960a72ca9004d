"""The room bus: the port every room frame travels through on its way to connections.

The relay's transition table says "send this text to these connections"; the bus carries
that to wherever the connections are. The in-memory adapter serves one node (connections
subscribed here, delivered here); the Redis adapter (server/rooms/redis_bus.py, issue 22)
carries the same calls between nodes. It sits with the relay, not in storage/: it stores
nothing, it only delivers. The contract is tests/integration/test_room_relay_bus.py,
parametrised over adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Close", "Deliver", "InMemoryRoomBus", "RoomBus"]

# Takes one text for one connection without blocking (it queues it; a full queue drops the
# connection as too slow, which is the connection's business, not the bus's).
Deliver = Callable[[str], None]
# Closes one connection with a WebSocket close code (the relay decided it, on any node).
Close = Callable[[int], None]


class RoomBus(Protocol):
    def subscribe(
        self, room: str, connection: int, deliver: Deliver, close: Close | None = None
    ) -> None:
        """Deliver what is published for `connection` of `room` through `deliver`. `close`
        is how an adapter that carries the relay's close decisions between nodes closes
        it (in memory the socket closes its own connections)."""
        ...

    def unsubscribe(self, room: str, connection: int) -> None:
        """Stop delivering to `connection` (it closed); unknown ones are ignored."""
        ...

    async def publish(self, room: str, connections: tuple[int, ...], text: str) -> None:
        """Hand `text` to each of `connections` of `room`, in publishing order per connection;
        connections not subscribed (gone) are skipped."""
        ...

    def drop_room(self, room: str) -> None:
        """The room ended: forget every subscription of it."""
        ...

    def subscriptions(self, room: str) -> int:
        """How many connections of `room` are subscribed (tests, metrics)."""
        ...

    async def settle(self) -> None:
        """Return once what this node published has reached its own subscribers (tests:
        delivery through Redis is asynchronous)."""
        ...


class InMemoryRoomBus:
    """One node's bus: a dict of rooms to connections to their delivery callbacks."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[int, Deliver]] = {}

    def subscribe(
        self, room: str, connection: int, deliver: Deliver, close: Close | None = None
    ) -> None:
        self._rooms.setdefault(room, {})[connection] = deliver

    def unsubscribe(self, room: str, connection: int) -> None:
        subscribers = self._rooms.get(room)
        if subscribers is not None:
            subscribers.pop(connection, None)
            if not subscribers:
                del self._rooms[room]

    async def publish(self, room: str, connections: tuple[int, ...], text: str) -> None:
        subscribers = self._rooms.get(room)
        if subscribers is None:
            return
        for connection in connections:
            deliver = subscribers.get(connection)
            if deliver is not None:
                deliver(text)

    def drop_room(self, room: str) -> None:
        self._rooms.pop(room, None)

    def subscriptions(self, room: str) -> int:
        return len(self._rooms.get(room, {}))

    async def settle(self) -> None:
        """Delivery is immediate here."""
