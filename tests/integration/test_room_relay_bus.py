"""The room bus contract, parametrised over adapters (issue 22's Redis pub/sub adapter is
one more parameter): what is published reaches exactly the named, subscribed connections
of that room, in publishing order, and nothing survives unsubscribe or drop_room."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from atopos.server.rooms.bus import InMemoryRoomBus, RoomBus

ADAPTERS: dict[str, Callable[[], RoomBus]] = {"memory": InMemoryRoomBus}


@pytest.fixture(params=sorted(ADAPTERS))
def bus(request: pytest.FixtureRequest) -> RoomBus:
    return ADAPTERS[request.param]()


def _inbox(bus: RoomBus, room: str, connection: int) -> list[str]:
    box: list[str] = []
    bus.subscribe(room, connection, box.append)
    return box


def test_publish_reaches_exactly_the_named_connections_in_order(bus: RoomBus) -> None:
    one, two, three = (_inbox(bus, "room-a", n) for n in (1, 2, 3))

    async def publish() -> None:
        for n in range(50):
            await bus.publish("room-a", (1, 3), f"frame {n}")
        await bus.publish("room-a", (2,), "only two")

    asyncio.run(publish())
    assert one == [f"frame {n}" for n in range(50)]
    assert three == one
    assert two == ["only two"]


def test_rooms_are_isolated_even_with_equal_connection_ids(bus: RoomBus) -> None:
    in_a = _inbox(bus, "room-a", 1)
    in_b = _inbox(bus, "room-b", 2)
    asyncio.run(bus.publish("room-a", (1, 2), "for a"))
    assert in_a == ["for a"]
    assert in_b == []


def test_unsubscribed_and_unknown_connections_get_nothing(bus: RoomBus) -> None:
    kept = _inbox(bus, "room-a", 1)
    gone = _inbox(bus, "room-a", 2)
    bus.unsubscribe("room-a", 2)
    bus.unsubscribe("room-a", 99)  # unknown: ignored
    asyncio.run(bus.publish("room-a", (1, 2, 99), "after"))
    asyncio.run(bus.publish("no-such-room", (1,), "nowhere"))
    assert kept == ["after"]
    assert gone == []
    assert bus.subscriptions("room-a") == 1


def test_drop_room_forgets_every_subscription(bus: RoomBus) -> None:
    first = _inbox(bus, "room-a", 1)
    _inbox(bus, "room-a", 2)
    other = _inbox(bus, "room-b", 3)
    bus.drop_room("room-a")
    asyncio.run(bus.publish("room-a", (1, 2), "late"))
    asyncio.run(bus.publish("room-b", (3,), "still"))
    assert first == []
    assert bus.subscriptions("room-a") == 0
    assert other == ["still"]
