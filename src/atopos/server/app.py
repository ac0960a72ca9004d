"""Assemble the ASGI application: routes, storage, access control, background sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from atopos.clock import Clock, SystemClock
from atopos.crypto.tokens import TokenKeys
from atopos.errors import AtoposError, Unavailable
from atopos.server.access import AccessControl
from atopos.server.config import ServerConfig
from atopos.server.error_pages import html_for_browsers
from atopos.server.errors import error_response, response_for
from atopos.server.identity import EphemeralIdentifiers
from atopos.server.keyfile import NodeKeys, load_key_file
from atopos.server.middleware import EdgeMiddleware
from atopos.server.openapi import openapi_document
from atopos.server.pages import page_routes
from atopos.server.ratelimit import RateLimits, rate_limit_storage
from atopos.server.ratelimit_persistence import PersistenceCheck, check_at_start
from atopos.server.secrets_api import SecretsApi
from atopos.server.sizes import max_envelope_bytes
from atopos.storage.factory import open_store
from atopos.storage.port import SecretStore

__all__ = ["create_app"]

_log = logging.getLogger("atopos.server")
_HEALTHY = msgspec.json.encode({"status": "ok", "storage": "up"})
_UNHEALTHY = msgspec.json.encode({"status": "unavailable", "storage": "down"})


def create_app(
    config: ServerConfig,
    *,
    clock: Clock | None = None,
    store: SecretStore | None = None,
    token_keys: TokenKeys | None = None,
) -> ASGIApp:
    clock = clock or SystemClock()
    # Read before anything else, so a bad key file stops the start with one sentence.
    node_keys = load_key_file(config.key_file) if config.key_file is not None else None
    # Then the same for a rate-limit Redis that would write client identifiers to disk.
    rate_limit_url = config.resolved_rate_limit_storage_url()
    persistence_check = _rate_limit_persistence_check(config, rate_limit_url)
    if node_keys is None:
        # Held in RAM only: a restart invalidates every outstanding challenge and ticket.
        node_keys = NodeKeys(os.urandom(32))
        identifiers = EphemeralIdentifiers(clock.now())
        if config.has_redis_storage():
            _log.warning(
                "shared storage without --key-file: other nodes will refuse this node's "
                "challenges and tickets, and rate limits will count per node"
            )
    else:
        # Every node derives the same identifier key, so shared rate limits see one client.
        identifiers = EphemeralIdentifiers(clock.now(), node_key=node_keys.current)
    store = store or open_store(config.resolved_storage_url())
    limits = RateLimits(
        config.per_minute_limits(), rate_limit_storage(rate_limit_url), persistence_check
    )
    access = AccessControl(
        token_keys or node_keys.token_keys(),
        limits,
        pow_bits=config.pow_bits,
        challenge_ttl=config.challenge_ttl,
        ticket_ttl=config.ticket_ttl,
    )
    api = SecretsApi(config, store, access, limits, clock, identifiers)
    openapi = openapi_document(
        max_envelope_bytes(config.max_content_bytes), config.max_ttl, config.max_views
    )

    async def health(_: Request) -> Response:
        try:
            await store.check()
        except Unavailable:
            return Response(_UNHEALTHY, status_code=503, media_type="application/json")
        return Response(_HEALTHY, media_type="application/json")

    async def openapi_json(_: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(config.sweep_interval)
            try:
                await store.sweep(int(clock.now()))
            except AtoposError:
                _log.warning("sweep failed; will retry")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await store.start(int(clock.now()))
        sweeper = asyncio.create_task(sweep_forever())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await store.aclose()

    async def atopos_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, AtoposError)
        return response_for(exc)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    routes = [
        Route("/api/v1/secrets", api.create, methods=["POST"]),
        Route("/api/v1/secrets/{id}/challenge", api.challenge, methods=["POST"]),
        Route("/api/v1/secrets/{id}/ticket", api.ticket, methods=["POST"]),
        Route("/api/v1/secrets/{id}/reveal", api.reveal, methods=["POST"]),
        Route("/api/v1/secrets/{id}/status", api.status, methods=["GET"]),
        Route("/api/v1/secrets/{id}", api.delete, methods=["DELETE"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *page_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            AtoposError: atopos_error,
            HTTPException: html_for_browsers(http_error),
        },
    )
    app.router.redirect_slashes = False  # absolute http:// URLs behind TLS; see pages.py
    return EdgeMiddleware(app)


def _rate_limit_persistence_check(config: ServerConfig, url: str | None) -> PersistenceCheck | None:
    """None when no counter goes to Redis (limits off, or kept in memory) or the operator
    opted out; otherwise the check, already passed if the Redis answered (InvalidInput, one
    sentence, if it persists or will not say)."""
    if url is None:
        return None
    if config.accepts_persistent_rate_limit_storage:
        _log.warning(
            "rate-limit counters may be written to disk: their redis is not checked for "
            "persistence (opted out)"
        )
        return None
    return check_at_start(url, is_default=config.rate_limit_storage_url is None)
