"""The rooms product on a node: the creation routes, the relay's WebSocket and the ticker
that fires the relay's deadlines (handshake, commit, TTL, empty grace, closing grace).

The rooms live in this node's RAM (`RoomRegistry`), or, with ATOPOS_ROOM_REDIS_URL, in the
room Redis shared by every node (`RedisRoomRelays`, issue 22)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp

from atopos.server.node import Node
from atopos.server.rooms.bus import InMemoryRoomBus, RoomBus
from atopos.server.rooms.creation import RoomCreationApi
from atopos.server.rooms.direct_route import DirectSocketRoute
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.server.rooms.registry import RoomRegistry
from atopos.server.rooms.relays import RoomRelays
from atopos.server.rooms.socket import RoomSockets

__all__ = ["RoomsProduct", "shared_rooms"]

_log = logging.getLogger("atopos.server")


class RoomsProduct:
    def __init__(
        self,
        node: Node,
        *,
        limits: RoomNodeLimits | None = None,
        bus: RoomBus | None = None,
        relays: RoomRelays | None = None,
    ) -> None:
        """`relays` and its `bus` come together (a shared store delivers through its own
        bus); by default, this node's RAM and an in-memory bus."""
        self._node = node
        self.relays: RoomRelays = relays or RoomRegistry(limits or RoomNodeLimits())
        # The in-memory registry, for tests that read the RAM state.
        self.registry = self.relays if isinstance(self.relays, RoomRegistry) else None
        self.bus: RoomBus = bus or InMemoryRoomBus()
        self._creation = RoomCreationApi(node, self.relays)
        self.sockets = RoomSockets(node, self.relays, self.bus)
        self._ticker: asyncio.Task[None] | None = None
        self._socket_route = WebSocketRoute("/api/v1/rooms/{room_id}", self.sockets)

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/api/v1/rooms", self._creation.create, methods=["POST"]),
            Route("/api/v1/rooms/{room_id}/challenge", self._creation.challenge, methods=["POST"]),
            self._socket_route,
        ]

    def around(self, app: ASGIApp) -> ASGIApp:
        """`app` with the room WebSocket routed around it (server/rooms/direct_route.py);
        the route also stays in `routes()`, for an app that is not wrapped."""
        return DirectSocketRoute(app, self._socket_route)

    async def start(self) -> None:
        await self.relays.start()
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.relays.stop()

    async def check(self) -> None:
        """Unavailable while the room Redis is down (RAM: never)."""
        self.relays.check()

    async def tick(self) -> None:
        """Fire every room's deadlines once (the ticker's step; tests call it after moving
        an injected clock)."""
        now = self._node.clock.now()
        for room_key, actions in await self.relays.tick_rooms(now):
            await self.sockets.apply(room_key, actions)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.relays.limits.tick_seconds)
            try:
                await self.tick()
            except Exception:  # a bug in one tick must not stop every later deadline
                _log.error("room ticker failed", exc_info=True)


def shared_rooms(node: Node, url: str, limits: RoomNodeLimits) -> RoomsProduct:
    """The rooms product on the room Redis at `url`, its persistence checked now
    (InvalidInput, one sentence, when it persists or will not say) unless the operator
    opted out."""
    from atopos.server.rooms.redis_relays import RedisRoomRelays, check_room_redis

    if node.config.accepts_persistent_room_redis:
        _log.warning("room state may be written to disk: its redis is not checked (opted out)")
        check = None
    else:
        check = check_room_redis(url, clock=node.clock)
    relays = RedisRoomRelays(
        url, limits, clock=node.clock, random_bytes=node.random_bytes, check=check
    )
    return RoomsProduct(node, limits=limits, bus=relays.bus, relays=relays)
