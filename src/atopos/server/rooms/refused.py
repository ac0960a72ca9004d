"""Rooms on a node with several worker processes: refused with a clear 503.

A room lives in the RAM of the process whose relay its members joined. With several workers
(server/workers.py), the members of one room would be accepted by different processes and
never see one another, so every room route answers 503 instead, saying why. With a room
Redis (ATOPOS_ROOM_REDIS_URL) the workers share rooms like several nodes do, and this
product is not mounted (docs/operations.md, "Worker processes").
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from atopos.errors import Unavailable
from atopos.server.errors import response_for

__all__ = ["ROOMS_REFUSED_MESSAGE", "RoomsRefused"]

ROOMS_REFUSED_MESSAGE = (
    "Rooms are not available on this server: it runs several worker processes, and rooms "
    "need a single one (ATOPOS_WORKERS=1) or a room Redis (ATOPOS_ROOM_REDIS_URL)."
)
# "Try again later" (RFC 6455 section 7.4.1), when the client cannot read a denial response.
_TRY_AGAIN_LATER = 1013


class RoomsRefused:
    """The rooms product's routes, each answering 503 with ROOMS_REFUSED_MESSAGE."""

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/api/v1/rooms", self._refuse, methods=["POST"]),
            Route("/api/v1/rooms/{room_id}/challenge", self._refuse, methods=["POST"]),
            WebSocketRoute("/api/v1/rooms/{room_id}", self._refuse_socket),
        ]

    async def start(self) -> None:
        """Nothing runs: there is no relay."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def check(self) -> None:
        """Refusing rooms is this node's healthy state, not an outage."""

    async def _refuse(self, _: Request) -> Response:
        raise Unavailable(ROOMS_REFUSED_MESSAGE)

    async def _refuse_socket(self, websocket: WebSocket) -> None:
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(response_for(Unavailable(ROOMS_REFUSED_MESSAGE)))
            return
        await websocket.close(code=_TRY_AGAIN_LATER, reason="rooms need a single worker")
