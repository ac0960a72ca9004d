"""Assemble the ASGI application: one node, the products mounted on it, the edge around it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from atopos.clock import Clock, SystemClock
from atopos.crypto.tokens import TokenKeys
from atopos.errors import AtoposError, Unavailable
from atopos.randomness import RandomBytes, system_random_bytes
from atopos.server.config import ServerConfig
from atopos.server.direct_routes import DirectHttpRoutes
from atopos.server.error_pages import html_for_browsers
from atopos.server.errors import error_response, response_for
from atopos.server.keyfile import NodeKeys
from atopos.server.middleware import EdgeMiddleware
from atopos.server.node import build_node
from atopos.server.pages import page_routes
from atopos.server.product import Product
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.server.rooms.mount import RoomsProduct, shared_rooms
from atopos.server.rooms.refused import RoomsRefused
from atopos.server.secrets import SecretsProduct
from atopos.server.shared_counters import SharedCounterTable
from atopos.storage.factory import open_store
from atopos.storage.request_port import SecretAndRequestStore

__all__ = ["create_app"]

_HEALTHY = msgspec.json.encode({"status": "ok", "storage": "up"})
_UNHEALTHY = msgspec.json.encode({"status": "unavailable", "storage": "down"})


def create_app(
    config: ServerConfig,
    *,
    clock: Clock | None = None,
    random_bytes: RandomBytes = system_random_bytes,
    store: SecretAndRequestStore | None = None,
    token_keys: TokenKeys | None = None,
    room_limits: RoomNodeLimits | None = None,
    on_rooms: Callable[[RoomsProduct], None] | None = None,
    node_keys: NodeKeys | None = None,
    shared_counters: SharedCounterTable | None = None,
    is_direct: bool = True,
) -> ASGIApp:
    """The node's app. `room_limits` (default: the config's) shrinks the relay's caps in
    tests, and `on_rooms` hands the rooms product to a test (to read its RAM state or fire
    its ticker). `node_keys` and `shared_counters`: the keys and the rate-limit counters a
    worker shares with the node's other workers. `is_direct=False` sends every request
    through Starlette's whole stack, for tests that compare it with the direct path of the
    hot secrets routes (server/direct_routes.py)."""
    clock = clock or SystemClock()
    node = build_node(
        config,
        clock,
        random_bytes,
        token_keys=token_keys,
        node_keys=node_keys,
        shared_counters=shared_counters,
    )
    has_workers = config.workers > 1
    store = store or open_store(
        config.resolved_storage_url(),
        clock,
        is_shared_by_workers=has_workers,
        writer_lock_wait=config.writer_lock_wait,
    )
    secrets = SecretsProduct(node, store)
    products: list[Product] = [secrets]
    limits = room_limits or config.room_limits()
    rooms: RoomsProduct | None = None
    if has_workers and config.room_redis_url is None:
        # Rooms in one process's RAM: with several workers, members of one room would land
        # on different relays (server/rooms/refused.py).
        products.append(RoomsRefused())
    else:
        if config.room_redis_url is not None:
            # Shared through the room Redis by every node and worker (rooms/redis_relays.py).
            rooms = shared_rooms(node, config.room_redis_url, limits)
        else:
            rooms = RoomsProduct(node, limits=limits)
        if on_rooms is not None:
            on_rooms(rooms)
        products.append(rooms)
    app = Starlette(
        routes=[*(r for p in products for r in p.routes()), *_node_routes(products)],
        lifespan=_lifespan(products),
        exception_handlers={
            AtoposError: _atopos_error,
            HTTPException: html_for_browsers(_http_error),
        },
    )
    # A trailing slash is not redirected: Starlette would build an absolute URL from the
    # request (http:// behind a TLS proxy). server/pages.py redirects its own, relatively.
    app.router.redirect_slashes = False
    # The room socket skips Starlette's layers: each would hold memory per idle member.
    around_app = app if rooms is None else rooms.around(app)
    if not is_direct:
        return EdgeMiddleware(around_app, clock)
    # So do a create and the steps of a reveal: the layers cost CPU on every request.
    return EdgeMiddleware(DirectHttpRoutes(around_app, app, secrets.hot_routes()), clock)


def _node_routes(products: Sequence[Product]) -> list[BaseRoute]:
    async def health(_: Request) -> Response:
        try:
            for product in products:
                await product.check()
        except Unavailable:
            return Response(_UNHEALTHY, status_code=503, media_type="application/json")
        return Response(_HEALTHY, media_type="application/json")

    return [Route("/healthz", health, methods=["GET"]), *page_routes()]


def _lifespan(
    products: Sequence[Product],
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as started:
            for product in products:
                await product.start()
                started.push_async_callback(product.stop)
            yield

    return lifespan


async def _atopos_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AtoposError)
    return response_for(exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response
