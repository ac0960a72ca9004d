"""What the direct path does with an endpoint's errors is what Starlette's stack does: a
handled error gets the app's handler, an unhandled one Starlette's bare 500 (the edge adds
its headers and logs it), and a set-up where the paths could differ is refused."""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from atopos.errors import AtoposError, Gone
from atopos.server.direct_routes import DirectHttpRoutes
from atopos.server.errors import response_for
from atopos.server.middleware import EdgeMiddleware


async def _fine(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]}, status_code=201)


async def _gone(_: Request) -> Response:
    raise Gone("Nothing here.")


async def _teapot(_: Request) -> Response:
    raise HTTPException(418, "short and stout")


async def _broken(_: Request) -> Response:
    raise RuntimeError("a detail that must not leave")


class _Unlucky(Exception):
    """An error whose handler fails in turn."""


async def _unlucky(_: Request) -> Response:
    raise _Unlucky()


async def _failing_handler(_: Request, exc: Exception) -> Response:
    raise RuntimeError("the handler broke") from exc


async def _atopos_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AtoposError)
    return response_for(exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"status": exc.status_code, "detail": exc.detail}, exc.status_code)


def _routes() -> list[Route]:
    return [
        Route("/fine/{id}", _fine, methods=["POST"]),
        Route("/gone", _gone, methods=["POST"]),
        Route("/teapot", _teapot, methods=["POST"]),
        Route("/broken", _broken, methods=["POST"]),
        Route("/unlucky", _unlucky, methods=["POST"]),
    ]


def _starlette(routes: list[Route], **options: object) -> Starlette:
    return Starlette(
        routes=routes,
        exception_handlers={
            AtoposError: _atopos_error,
            HTTPException: _http_error,
            _Unlucky: _failing_handler,
        },
        **options,  # type: ignore[arg-type]
    )


def _answers(app: object) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    async def call() -> list[tuple[int, list[tuple[str, str]], bytes]]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://direct") as client:
            responses = [
                await client.post("/fine/abc"),
                await client.post("/gone"),
                await client.post("/teapot"),
                await client.post("/broken"),
                await client.post("/unlucky"),
                await client.get("/gone"),
                await client.post("/nowhere"),
            ]
        return [(r.status_code, r.headers.multi_items(), r.content) for r in responses]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call()).result(timeout=30)


def test_errors_are_answered_as_through_starlettes_stack() -> None:
    routes = _routes()
    app = _starlette(routes)
    direct = _answers(EdgeMiddleware(DirectHttpRoutes(app, app, routes)))
    plain = _answers(EdgeMiddleware(_starlette(_routes())))
    assert direct == plain
    assert [status for status, _, _ in direct] == [201, 404, 418, 500, 500, 405, 404]
    assert direct[3][2] == direct[4][2] == b"Internal Server Error"


def test_a_set_up_where_the_paths_could_differ_is_refused() -> None:
    routes = _routes()
    app = _starlette(routes)
    with pytest.raises(ValueError, match="first routes"):
        DirectHttpRoutes(app, app, routes[1:])
    layered = _starlette(routes, middleware=[Middleware(GZipMiddleware)])
    with pytest.raises(ValueError, match="middleware"):
        DirectHttpRoutes(layered, layered, routes)
    for handlers in ({500: _http_error}, {Exception: _http_error}):
        own_500 = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="server errors"):
            DirectHttpRoutes(own_500, own_500, routes)
    wrapped = [
        Route("/fine/{id}", _fine, methods=["POST"], middleware=[Middleware(GZipMiddleware)])
    ]
    with pytest.raises(ValueError, match="coroutine endpoint"):
        DirectHttpRoutes(_starlette(wrapped), _starlette(wrapped), wrapped)


async def _status_handler(_: Request, exc: Exception) -> Response:
    return JSONResponse({"by": "status"}, 418)


def test_an_app_whose_http_errors_starlette_answers_differently_is_refused() -> None:
    # A handler by status code (ExceptionMiddleware tries it before the class's handler),
    # or no handler of the app's own for HTTPException (Starlette then answers in plain
    # text): the direct path would answer a hot endpoint's HTTPException otherwise.
    routes = _routes()
    by_status = _starlette(routes)
    by_status.exception_handlers[418] = _status_handler
    with pytest.raises(ValueError, match="HTTP errors"):
        DirectHttpRoutes(by_status, by_status, routes)
    without_http = Starlette(routes=routes, exception_handlers={AtoposError: _atopos_error})
    with pytest.raises(ValueError, match="HTTP errors"):
        DirectHttpRoutes(without_http, without_http, routes)


def test_an_app_whose_stack_has_other_layers_is_refused() -> None:
    # A Starlette whose stack is not ServerErrorMiddleware > ExceptionMiddleware > router
    # (a later Starlette may add a layer, as it added the body limit): refused at start.
    class Layered(Starlette):
        def build_middleware_stack(self) -> ASGIApp:
            return GZipMiddleware(super().build_middleware_stack())

    routes = _routes()
    layered = Layered(
        routes=routes,
        exception_handlers={AtoposError: _atopos_error, HTTPException: _http_error},
    )
    with pytest.raises(ValueError, match="layers"):
        DirectHttpRoutes(layered, layered, routes)


def test_the_direct_routes_serve_their_requests_and_pass_on_the_rest() -> None:
    # Equal answers on both paths would also come from a direct path that never serves:
    # which requests reach the app behind it shows that it does.
    routes = _routes()
    app = _starlette(routes)
    passed_on: list[tuple[str, str, str]] = []

    async def behind(scope: Scope, receive: Receive, send: Send) -> None:
        passed_on.append((scope["method"], scope["path"], scope.get("root_path", "")))
        await app(scope, receive, send)

    direct = EdgeMiddleware(DirectHttpRoutes(behind, app, routes))

    async def call() -> list[int]:
        transport = httpx.ASGITransport(app=direct, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://direct") as client:
            served = [
                await client.post("/fine/abc"),
                await client.post("/gone"),
                await client.post("/teapot"),
            ]
            passed = [
                await client.get("/gone"),
                await client.head("/gone"),
                await client.post("/fine/abc/"),
            ]
        # Behind a proxy mounted at /fine, the router matches "/abc" (no route): so must we.
        proxied = httpx.ASGITransport(app=direct, root_path="/fine")
        async with httpx.AsyncClient(transport=proxied, base_url="http://direct") as client:
            passed.append(await client.post("/fine/abc"))
        return [r.status_code for r in [*served, *passed]]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        statuses = pool.submit(asyncio.run, call()).result(timeout=30)
    assert statuses == [201, 404, 418, 405, 405, 307, 404]
    assert passed_on == [
        ("GET", "/gone", ""),
        ("HEAD", "/gone", ""),
        ("POST", "/fine/abc/", ""),
        ("POST", "/fine/abc", "/fine"),
    ]
