"""The room Redis adapter (server/rooms/redis_relays.py) on a real Redis and Redis Cluster:
two nodes applying events to one room at once never fork its sequence (each event runs on
the state the other left, and the channel carries the batches in that order), and an ended
room leaves no key behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from atopos.clock import SystemClock
from atopos.protocol.room_creation import make_room
from atopos.protocol.room_relay import Action, RelayRoom, SendText, WipeRoom
from atopos.protocol.room_relay_snapshot import load_room
from atopos.server.identity import ClientId
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.server.rooms.redis_relays import RedisRoomRelays, state_key_of
from atopos.storage.redis_clients import sync_client
from tests.room_relay_server import until
from tests.rooms_support import SeededRandom

EVENTS_PER_NODE = 150


@pytest.fixture(params=["redis", "cluster"])
def room_redis_url(request: pytest.FixtureRequest) -> str:
    fixture = {"redis": "redis_ephemeral_url", "cluster": "redis_cluster_ephemeral_url"}
    return str(request.getfixturevalue(fixture[request.param]))


def _relays(url: str, label: str) -> RedisRoomRelays:
    return RedisRoomRelays(
        url,
        RoomNodeLimits(),
        clock=SystemClock(),
        random_bytes=SeededRandom(label),
        check=None,
    )


def _bump(connection: int) -> Callable[[RelayRoom], list[Action]]:
    """A stand-in event that moves the sequence on by one and says where it got to."""

    def event(room: RelayRoom) -> list[Action]:
        room.seq += 1
        return [SendText((connection,), str(room.seq))]

    return event


def _end(room: RelayRoom) -> list[Action]:
    return [WipeRoom()]


def test_two_nodes_at_once_never_fork_a_rooms_sequence(room_redis_url: str) -> None:
    new = make_room("https://rooms.example", SeededRandom("fork"), name="Plans")
    room_id = new.creation.room_id

    async def scenario() -> None:
        node_a, node_b = _relays(room_redis_url, "node a"), _relays(room_redis_url, "node b")
        await node_a.start()
        await node_b.start()
        try:
            await node_a.create(new.creation, ClientId("someone"), SystemClock().now())
            connection = node_a.next_connection()
            seen: list[str] = []
            node_a.bus.subscribe(room_id, connection, seen.append)
            await node_a.bus.ready(room_id)
            await asyncio.gather(
                *(
                    node.step(room_id, _bump(connection))
                    for _ in range(EVENTS_PER_NODE)
                    for node in (node_a, node_b)
                )
            )
            total = 2 * EVENTS_PER_NODE
            await until(lambda: len(seen) >= total, within=20)
            assert seen == [str(n) for n in range(1, total + 1)]
            with sync_client(room_redis_url, client_name="atopos-test") as client:
                stored = client.hget(state_key_of(room_id), "s")
            assert load_room(stored).seq == total  # type: ignore[arg-type]
            await node_b.step(room_id, _end)
            assert not await node_a.has_room(room_id)
            assert await node_a.step(room_id, _bump(connection)) is None
        finally:
            await node_a.stop()
            await node_b.stop()

    asyncio.run(scenario())
    with sync_client(room_redis_url, client_name="atopos-test") as client:
        keys = [key for key in client.scan_iter(match="*") if room_id.encode() in key]
        assert keys == []
        assert client.zrange("atopos:room-index", 0, -1) == []
