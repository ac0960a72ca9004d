"""The room WebSocket's way around Starlette's stack: a room connection lives for hours, and
every ASGI layer it passes keeps a coroutine frame (and closures) alive for as long as it is
open, about 3 KiB per idle member (docs/performance.md, "Rooms").

`DirectSocketRoute` sits between the edge middleware and the Starlette app. A WebSocket
whose path the room route matches goes straight to the route's handler, with the scope the
router would have given it (`route`, `endpoint`, `path_params`); everything else goes to
the app unchanged. Starlette's layers do nothing for this socket that the edge does not:
an error in the handler still reaches the edge middleware, which closes with 1011.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DirectSocketRoute"]


class DirectSocketRoute:
    def __init__(self, app: ASGIApp, route: WebSocketRoute) -> None:
        self.app = app
        self._route = route

    @property
    def routes(self) -> list[BaseRoute]:
        """The wrapped app's routes (the room route among them), for whoever lists them."""
        routes: list[BaseRoute] = getattr(self.app, "routes", [])
        return routes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The awaitable of the app that serves `scope`. (Not a coroutine of its own: its
        frame would stay alive, and count, for as long as the connection is open.)"""
        if scope["type"] == "websocket":
            match, child_scope = self._route.matches(scope)
            if match is Match.FULL:
                scope["route"] = self._route
                scope.update(child_scope)
                return self._route.app(scope, receive, send)
        return self.app(scope, receive, send)
