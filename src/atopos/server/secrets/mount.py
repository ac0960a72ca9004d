"""The secrets product on a node: its API routes, its storage and the sweeper that deletes
expired secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from atopos.errors import AtoposError
from atopos.server.node import Node
from atopos.server.secrets.api import SecretsApi
from atopos.server.secrets.openapi import openapi_document
from atopos.server.secrets.requests_api import RequestsApi
from atopos.server.secrets.sizes import max_envelope_bytes
from atopos.storage.request_port import SecretAndRequestStore

__all__ = ["SecretsProduct"]

_log = logging.getLogger("atopos.server")


class SecretsProduct:
    def __init__(self, node: Node, store: SecretAndRequestStore) -> None:
        self._node = node
        self._store = store
        self._api = SecretsApi(node, store)
        self._requests = RequestsApi(node, store)
        config = node.config
        self._openapi = openapi_document(
            max_envelope_bytes(config.max_content_bytes), config.max_ttl, config.max_views
        )
        self._sweeper: asyncio.Task[None] | None = None
        api = self._api
        self._hot_routes = (
            Route("/api/v1/secrets", api.create, methods=["POST"]),
            Route("/api/v1/secrets/{id}/challenge", api.challenge, methods=["POST"]),
            Route("/api/v1/secrets/{id}/ticket", api.ticket, methods=["POST"]),
            Route("/api/v1/secrets/{id}/reveal", api.reveal, methods=["POST"]),
        )

    def hot_routes(self) -> Sequence[Route]:
        """The routes of a create and of a reveal flow, the first of `routes()`: the node
        serves them around Starlette's stack (server/direct_routes.py)."""
        return self._hot_routes

    def routes(self) -> Sequence[BaseRoute]:
        api = self._api
        return [
            *self._hot_routes,
            Route("/api/v1/secrets/{id}/status", api.status, methods=["GET"]),
            Route("/api/v1/secrets/{id}/receipts", api.receipts, methods=["GET"]),
            Route("/api/v1/secrets/{id}", api.delete, methods=["DELETE"]),
            # Secret requests (docs/protocol/requests.md).
            Route("/api/v1/requests", self._requests.create, methods=["POST"]),
            Route("/api/v1/requests/{id}", self._requests.status, methods=["GET"]),
            Route("/api/v1/requests/{id}", self._requests.cancel, methods=["DELETE"]),
            Route("/api/v1/requests/{id}/fill", self._requests.fill, methods=["POST"]),
            Route("/openapi.json", self._openapi_json, methods=["GET"]),
        ]

    async def _openapi_json(self, _: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def start(self) -> None:
        await self._store.start(self._node.now())
        await self._follow_sweep_floor()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _follow_sweep_floor(self) -> None:
        """Decide no earlier than the store's sweep floor, as any process of the node last
        raised it (docs/protocol/access.md, "Clock steps")."""
        self._node.decision_time.raise_floor(await self._store.sweep_floor())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self._store.aclose()

    async def check(self) -> None:
        await self._store.check()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._node.config.sweep_interval)
            try:
                await self._store.sweep(self._node.now())
                await self._follow_sweep_floor()
            except AtoposError:
                _log.warning("sweep failed; will retry")
