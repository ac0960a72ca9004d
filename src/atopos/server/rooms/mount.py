"""The rooms product on a node: the creation routes, the relay's WebSocket and the ticker
that fires the relay's deadlines (handshake, commit, TTL, empty grace, closing grace)."""

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
from atopos.server.rooms.socket import RoomSockets

__all__ = ["RoomsProduct"]

_log = logging.getLogger("atopos.server")


class RoomsProduct:
    def __init__(
        self,
        node: Node,
        *,
        limits: RoomNodeLimits | None = None,
        bus: RoomBus | None = None,
    ) -> None:
        self._node = node
        self.registry = RoomRegistry(limits or RoomNodeLimits())
        self.bus: RoomBus = bus or InMemoryRoomBus()
        self._creation = RoomCreationApi(node, self.registry)
        self.sockets = RoomSockets(node, self.registry, self.bus)
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
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def check(self) -> None:
        """RAM only: nothing to be down."""

    async def tick(self) -> None:
        """Fire every room's deadlines once (the ticker's step; tests call it after moving
        an injected clock)."""
        now = self._node.clock.now()
        for room_key, room in list(self.registry.rooms.items()):
            await self.sockets.apply(room_key, room.tick(now))
        self.registry.sweep(now)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.registry.limits.tick_seconds)
            try:
                await self.tick()
            except Exception:  # a bug in one tick must not stop every later deadline
                _log.error("room ticker failed", exc_info=True)
