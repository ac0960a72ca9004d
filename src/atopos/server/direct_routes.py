"""The hot HTTP routes' way around Starlette's stack: a create and each step of a reveal
would pass Starlette's application, its two exception middlewares, the router (which tries
the routes one by one) and the endpoint wrapper, 10-20 µs of server CPU per request
(docs/performance.md, "Issue 20: the lean path").

`DirectHttpRoutes` sits between the edge middleware and the app. An HTTP request whose
method and path one of its routes matches goes straight to that route's endpoint, with the
scope Starlette would have given it (`app`, `router`, `route`, `endpoint`, `path_params`)
and the app's own exception handlers; every other request goes to the app unchanged.
What a client sees is the same on both paths, because the same pieces decide it:

- the routes are the app's first routes, the same objects, tried in the same order with
  the same pattern and method, so a request takes the route the router would have taken
  (any other method or path, a wrong method included, falls through to the router);
- an error the endpoint raises is answered by the app's handler for its class (looked up
  along the class's MRO, as Starlette does); any other error gets Starlette's own 500
  answer and goes on to the edge middleware, as through `ServerErrorMiddleware`;
- the edge middleware (security headers, the access log with the route template, the
  last-resort 500) and the connection guard below uvicorn are the same for both paths.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from atopos.server.error_pages import ErrorHandler

__all__ = ["DirectHttpRoutes"]


class DirectHttpRoutes:
    def __init__(self, app: ASGIApp, starlette: Starlette, routes: Sequence[Route]) -> None:
        """`app` serves everything else (the Starlette app `starlette`, or a layer around
        it); `routes` must be the first routes of `starlette`, in its order."""
        _check_equivalent(starlette, routes)
        self.app = app
        self._starlette = starlette
        # Checked above to be coroutine functions, as ErrorHandler says.
        handlers = cast(Mapping[Any, ErrorHandler], starlette.exception_handlers)
        self._handlers = handlers
        # What ExceptionMiddleware puts in the scope: handlers by class, none by status.
        self._scoped_handlers: tuple[dict[Any, ErrorHandler], dict[int, ErrorHandler]] = (
            dict(handlers),
            {},
        )
        # Starlette's answer to an error no handler takes (debug off, no 500 handler).
        self._server_errors = ServerErrorMiddleware(app)
        by_method: dict[str, list[Route]] = {}
        for route in routes:
            for method in route.methods or ():
                by_method.setdefault(method, []).append(route)
        self._by_method = {method: tuple(found) for method, found in by_method.items()}

    @property
    def routes(self) -> list[BaseRoute]:
        """The app's routes (the direct ones among them), for whoever lists them."""
        return self._starlette.routes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A root_path would make the router match against part of the path: the app's.
        if scope["type"] == "http" and not scope.get("root_path"):
            candidates = self._by_method.get(scope["method"])
            if candidates is not None:
                path = scope["path"]
                for route in candidates:
                    match = route.path_regex.match(path)
                    if match is not None:
                        params = {
                            name: route.param_convertors[name].convert(value)
                            for name, value in match.groupdict().items()
                        }
                        return self._serve(route, params, scope, receive, send)
        return self.app(scope, receive, send)

    async def _serve(
        self, route: Route, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope["app"] = self._starlette
        scope["router"] = self._starlette.router
        scope["starlette.exception_handlers"] = self._scoped_handlers
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await self._answer(route, request)
        except Exception as exc:
            # As ServerErrorMiddleware does: Starlette's 500, then on to the edge.
            await self._server_errors.error_response(request, exc)(scope, receive, send)
            raise
        # An error while the answer is sent has no handler on either path: once the answer
        # has started, Starlette's layers pass it on to the edge too.
        await response(scope, receive, send)

    async def _answer(self, route: Route, request: Request) -> Response:
        """The endpoint's answer, or the app's handler's for the error it raised (an error
        without a handler, or from a handler, goes on)."""
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            # A reused exception instance would pile up tracebacks (as Starlette notes).
            exc.__traceback__ = None
        return response

    def _handler_for(self, exc: Exception) -> ErrorHandler | None:
        for kind in type(exc).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler
        return None


def _check_equivalent(starlette: Starlette, routes: Sequence[Route]) -> None:
    """Refuse a set-up in which the direct path could answer differently from the app:
    routes the router would not try first, or layers of the app that would be skipped."""
    leading = starlette.routes[: len(routes)]
    if len(leading) != len(routes) or any(a is not b for a, b in zip(leading, routes, strict=True)):
        raise ValueError("The direct routes must be the app's first routes, in its order.")
    if starlette.user_middleware or getattr(starlette, "max_body_size", None) is not None:
        raise ValueError("The app has middleware that the direct routes would skip.")
    if starlette.debug or any(key in (500, Exception) for key in starlette.exception_handlers):
        raise ValueError("The app answers server errors its own way; the direct routes would not.")
    if not all(inspect.iscoroutinefunction(h) for h in starlette.exception_handlers.values()):
        raise ValueError("Each exception handler of the app must be a coroutine function.")
    # ExceptionMiddleware tries a handler by status code first, and answers HTTPException
    # itself when the app does not: the direct path looks handlers up by class only.
    if HTTPException not in starlette.exception_handlers or any(
        isinstance(key, int) for key in starlette.exception_handlers
    ):
        raise ValueError("The app must answer HTTP errors by class, with its own handler.")
    # What Starlette runs before the router: a layer a later Starlette adds (as it added the
    # body limit) would be skipped by the direct path.
    stack = starlette.build_middleware_stack()
    if not (
        type(stack) is ServerErrorMiddleware
        and type(stack.app) is ExceptionMiddleware
        and stack.app.app is starlette.router
    ):
        raise ValueError("The app's stack has layers that the direct routes would skip.")
    for route in routes:
        # A route with middleware of its own has an object, not request_response's function,
        # as its app; a plain function endpoint would run in a thread pool.
        if not (
            route.methods
            and inspect.isfunction(route.app)
            and inspect.iscoroutinefunction(route.endpoint)
        ):
            raise ValueError("Each direct route has methods and a coroutine endpoint, alone.")
