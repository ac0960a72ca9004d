"""The room bus contract, parametrised over adapters: in memory, the Redis adapter on one
Redis and on a Redis Cluster (sharded pub/sub, issue 22). What is published reaches exactly
the named, subscribed connections of that room, in publishing order, and nothing survives
unsubscribe or drop_room. Delivery through Redis is asynchronous: each check first waits
for `settle`, which the in-memory adapter answers at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from atopos.server.rooms.bus import InMemoryRoomBus, RoomBus
from atopos.server.rooms.redis_bus import RedisRoomBus
from atopos.storage.redis_clients import async_client

Scenario = Callable[[RoomBus], Awaitable[None]]


@pytest.fixture(params=["memory", "redis", "cluster"])
def run(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Runs a scenario against one adapter, built inside the scenario's event loop."""
    url = {
        "memory": None,
        "redis": "redis_ephemeral_url",
        "cluster": "redis_cluster_ephemeral_url",
    }[request.param]
    redis_url = None if url is None else request.getfixturevalue(url)

    @contextlib.asynccontextmanager
    async def adapter() -> AsyncIterator[RoomBus]:
        if redis_url is None:
            yield InMemoryRoomBus()
            return
        client = async_client(redis_url, client_name="atopos-test-bus")
        lost: list[bool] = []
        bus = RedisRoomBus(client, redis_url, on_lost=lambda: lost.append(True))
        try:
            yield bus
        finally:
            await bus.close()
            await client.aclose()
        assert lost == []

    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            async with adapter() as bus:
                await asyncio.wait_for(scenario(bus), 30)

        asyncio.run(main())

    return runner


def _inbox(bus: RoomBus, room: str, connection: int) -> list[str]:
    box: list[str] = []
    bus.subscribe(room, connection, box.append)
    return box


def test_publish_reaches_exactly_the_named_connections_in_order(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(bus: RoomBus) -> None:
        one, two, three = (_inbox(bus, "room-a", n) for n in (1, 2, 3))
        for n in range(50):
            await bus.publish("room-a", (1, 3), f"frame {n}")
        await bus.publish("room-a", (2,), "only two")
        await bus.settle()
        assert one == [f"frame {n}" for n in range(50)]
        assert three == one
        assert two == ["only two"]

    run(scenario)


def test_rooms_are_isolated_even_with_equal_connection_ids(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(bus: RoomBus) -> None:
        in_a = _inbox(bus, "room-a", 1)
        in_b = _inbox(bus, "room-b", 2)
        await bus.publish("room-a", (1, 2), "for a")
        await bus.publish("room-b", (1,), "for b, to nobody")
        await bus.settle()
        assert in_a == ["for a"]
        assert in_b == []

    run(scenario)


def test_unsubscribed_and_unknown_connections_get_nothing(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(bus: RoomBus) -> None:
        kept = _inbox(bus, "room-a", 1)
        gone = _inbox(bus, "room-a", 2)
        bus.unsubscribe("room-a", 2)
        bus.unsubscribe("room-a", 99)  # unknown: ignored
        await bus.publish("room-a", (1, 2, 99), "after")
        await bus.publish("no-such-room", (1,), "nowhere")
        await bus.settle()
        assert kept == ["after"]
        assert gone == []
        assert bus.subscriptions("room-a") == 1

    run(scenario)


def test_drop_room_forgets_every_subscription(run: Callable[[Scenario], None]) -> None:
    async def scenario(bus: RoomBus) -> None:
        first = _inbox(bus, "room-a", 1)
        _inbox(bus, "room-a", 2)
        other = _inbox(bus, "room-b", 3)
        await bus.publish("room-b", (3,), "first")  # both channels are live before the drop
        await bus.settle()
        bus.drop_room("room-a")
        await bus.publish("room-a", (1, 2), "late")
        await bus.publish("room-b", (3,), "still")
        await bus.settle()
        assert first == []
        assert bus.subscriptions("room-a") == 0
        assert other == ["first", "still"]

    run(scenario)
