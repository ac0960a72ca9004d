"""An httpx transport that carries every request through the mixnet to an exit service
(docs/mixnet.md, "Clients"): `atopos secret ... --mixnet TOPOLOGY`.

The secrets protocol is unchanged: the API client builds the same requests, and this
transport hands each to an `ExitConnection` on a mixnet client that runs, with its own event
loop, on a thread of its own from the first request until the transport is closed. That
client sends at its constant rate, so the requests leave in its ordinary send slots.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from atopos.clock import Clock
from atopos.crypto.randomness import RandomBytes, draw
from atopos.errors import NetworkError
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.exit_client import ExitConnection
from atopos.mixnet.settings import ClientSettings
from atopos.protocol.mix_exit import ExitRequest
from atopos.protocol.mix_route import choose_index
from atopos.protocol.mix_topology import Topology

__all__ = ["MixnetHttpTransport"]

_T = TypeVar("_T")
# Largest answer the CLI expects from the secrets API in one response (JSON, or a revealed
# envelope of a text secret); each 2022 bytes of it costs one SURB per request.
DEFAULT_MAX_ANSWER_BYTES = 16 * 1024
_THREAD_SLACK = 5.0  # slack above the request timeout for the mixnet thread to answer
# What the server's status and headers (its security headers among them, about 0.7 KB)
# take of an answer at most: the rest is for the body.
_ANSWER_HEADER_ROOM = 2048


class MixnetHttpTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Send each request to the topology's first exit through a fresh mixnet client.

    It serves sync and asyncio httpx clients alike (`room create` uses the latter): an async
    request waits, on a worker thread, for the mixnet thread's answer, so the caller's event
    loop keeps running."""

    def __init__(
        self,
        topology: Topology,
        clock: Clock,
        random_bytes: RandomBytes,
        settings: ClientSettings | None = None,
        *,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        timeout: float = 120.0,
    ) -> None:
        if not topology.exits:
            raise NetworkError("The mixnet topology names no exit service for Atopos.")
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._is_started = False
        gateway = topology.gateways[choose_index(random_bytes, len(topology.gateways))]
        self._client = MixnetClient(
            topology,
            gateway,
            X25519PrivateKey.from_private_bytes(draw(random_bytes, 32)),
            draw(random_bytes, 32),
            clock,
            random_bytes,
            settings or ClientSettings(),
        )
        self._exit = ExitConnection(
            self._client,
            topology.exits[0],
            random_bytes,
            max_answer_bytes=max_answer_bytes,
            timeout=timeout,
        )
        # The largest body (a revealed envelope) an answer can carry: a reveal sends it as
        # max_bytes, so the server refuses a larger secret before it spends the view.
        self.max_body_bytes = self._exit.answer_bytes - _ANSWER_HEADER_ROOM

    def _start(self) -> None:
        """Connect on the first request: a command that sends none costs nothing."""
        self._thread.start()
        self._is_started = True
        self._run(self._client.start())

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._timeout + _THREAD_SLACK)
        except TimeoutError:
            future.cancel()
            raise NetworkError("The server did not answer through the mixnet.") from None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._is_started:
            self._start()
        body = request.read()
        path = request.url.raw_path.decode("ascii")
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
        )
        answer = self._run(self._exit.request(ExitRequest(request.method, path, headers, body)))
        return httpx.Response(
            answer.status, headers=list(answer.headers), content=answer.body, request=request
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()  # the sync path then reads the body from memory
        return await asyncio.to_thread(self.handle_request, request)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        if not self._is_started or self._loop.is_closed():
            return

        async def stop() -> None:
            await self._exit.close()
            await self._client.close()

        try:
            self._run(stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
