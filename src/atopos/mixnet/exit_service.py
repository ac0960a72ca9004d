"""The exit service: a mixnet endpoint in front of one Atopos server (docs/mixnet.md, "Exit").

It is a mixnet client with its own X25519 mailbox key (named in the topology's `exits`, and
not any node's Sphinx key), so it sends at a constant rate like every client. It reassembles
the requests clients send it in fragments (`protocol/mix_exit.py`, with its caps), performs
each against the server over HTTP, and sends the answer back on the SURBs the request
carried. It never learns who asked: a request carries a random session id and SURBs only.
It logs nothing about requests.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from atopos.clock import Clock
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.exit_streams import STREAM_METHODS, ExitStreams
from atopos.protocol.mix_exit import (
    MAX_REPLY_CHUNK,
    AssembledRequest,
    ExitLimits,
    ExitResponse,
    InvalidExitMessage,
    RequestAssembler,
    decode_request,
    encode_response,
    reply_messages,
)

__all__ = ["ExitService"]

# Headers that describe one hop, not the request, or that would claim an address.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "content-length",
        "content-encoding",
        "forwarded",
        "host",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-forwarded-for",
        "x-real-ip",
    }
)


# What an answer's status and headers take of its reply blocks, at most, for a stream's.
_ANSWER_HEADER_ROOM = 256


def _forwardable(headers: tuple[tuple[str, str], ...] | httpx.Headers) -> list[tuple[str, str]]:
    items = headers.multi_items() if isinstance(headers, httpx.Headers) else list(headers)
    return [(k, v) for k, v in items if k.lower() not in _NOT_FORWARDED]


def _exit_error(status: int, code: str) -> bytes:
    body = json.dumps({"error": code}).encode()
    return encode_response(ExitResponse(status, (("content-type", "application/json"),), body))


class ExitService:
    """Answer requests arriving at `client`'s mailbox by asking `server` (an httpx base URL)."""

    def __init__(
        self,
        client: MixnetClient,
        server: httpx.AsyncClient,
        clock: Clock,
        limits: ExitLimits | None = None,
        upstream_timeout: float = 30.0,
        streams: ExitStreams | None = None,
    ) -> None:
        self.client = client
        self._server = server
        self._clock = clock
        self.assembler = RequestAssembler(limits or ExitLimits())
        self._upstream_timeout = upstream_timeout
        self.streams = streams  # WebSockets (rooms) to the server; None: HTTP only
        self._tasks: set[asyncio.Task[None]] = set()
        self._receiver: asyncio.Task[None] | None = None
        self.answered = 0
        self.dropped_fragments = 0

    async def start(self) -> None:
        await self.client.start()
        self._receiver = asyncio.get_running_loop().create_task(self._receive())

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._receiver] if self._receiver else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.streams is not None:
            await self.streams.close()
        await self.client.close()

    async def _receive(self) -> None:
        while True:
            fragment = await self.client.receive()
            try:
                request = self.assembler.add(fragment, self._clock.monotonic())
            except InvalidExitMessage:
                self.dropped_fragments += 1
                continue
            if request is not None:
                task = asyncio.get_running_loop().create_task(self._answer(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, assembled: AssembledRequest) -> None:
        try:
            answer = await self._perform(assembled)
            try:
                messages = reply_messages(
                    assembled.session, assembled.request_id, answer, len(assembled.surbs)
                )
            except ValueError:
                too_large = _exit_error(502, "answer_exceeds_reply_blocks")
                messages = reply_messages(assembled.session, assembled.request_id, too_large, 1)
            for surb, message in zip(assembled.surbs, messages, strict=False):
                try:
                    self.client.send_reply(surb, message)
                except ValueError:
                    break  # a SURB that does not start at our gateway cannot be used
            self.answered += 1
        finally:
            self.assembler.finish(assembled.session, assembled.request_id)

    async def _perform(self, assembled: AssembledRequest) -> bytes:
        try:
            request = decode_request(assembled.request)
        except InvalidExitMessage:
            return _exit_error(400, "malformed_exit_request")
        if request.method in STREAM_METHODS:
            if self.streams is None:
                return _exit_error(405, "no_streams_at_this_exit")
            budget = len(assembled.surbs) * MAX_REPLY_CHUNK - _ANSWER_HEADER_ROOM
            return encode_response(await self.streams.handle(assembled.session, request, budget))
        # Never hold more of the server's answer than the request's SURBs can carry.
        limit = len(assembled.surbs) * MAX_REPLY_CHUNK
        try:
            async with (
                asyncio.timeout(self._upstream_timeout),
                self._server.stream(
                    request.method,
                    request.path,
                    headers=_forwardable(request.headers),
                    content=request.body,
                ) as response,
            ):
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        return _exit_error(502, "answer_exceeds_reply_blocks")
        except (httpx.HTTPError, TimeoutError):
            return _exit_error(504, "server_unreachable_from_exit")
        headers = tuple(_forwardable(response.headers))
        return encode_response(ExitResponse(response.status_code, headers, bytes(body)))
