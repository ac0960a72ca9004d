"""A client's side of the exit service: one request out in fragments, one answer back on
SURBs (docs/protocol/mixnet.md, "Exit service").

The fragments leave on the mixnet client's constant-rate send slots like any data, so an
observer of the client's link sees the same rate whether it asks the server or not. A random
session id ties the requests of one run together at the exit (the server links them anyway:
a ticket, a room); it names no one.
"""

from __future__ import annotations

import asyncio
import math

from atopos.crypto.randomness import RandomBytes, draw
from atopos.errors import NetworkError, TooLarge
from atopos.mixnet.client import MixnetClient
from atopos.protocol.mix_exit import (
    MAX_REPLY_CHUNK,
    SESSION_BYTES,
    ExitLimits,
    ExitRequest,
    ExitResponse,
    InvalidExitMessage,
    ReplyAssembler,
    decode_response,
    encode_request,
    request_fragments,
)
from atopos.protocol.mix_message import MixAddress
from atopos.protocol.mix_topology import MixExit

__all__ = ["ExitConnection"]


class ExitConnection:
    """Requests to the exit `exit_service` through `client` (started by the caller).

    `max_answer_bytes` sets how many SURBs go with each request (one per MAX_REPLY_CHUNK of
    answer); at most `max_outstanding` requests wait for their answer at once."""

    def __init__(
        self,
        client: MixnetClient,
        exit_service: MixExit,
        random_bytes: RandomBytes,
        *,
        max_answer_bytes: int = 16 * 1024,
        max_outstanding: int = 4,
        timeout: float = 60.0,
    ) -> None:
        self.client = client
        self.exit_address = MixAddress(
            exit_service.gateway_id, exit_service.mailbox_id, exit_service.public_key
        )
        self._random_bytes = random_bytes
        self._session = draw(random_bytes, SESSION_BYTES)
        self._surbs_per_request = max(1, math.ceil(max_answer_bytes / MAX_REPLY_CHUNK))
        # What one answer (status, headers and body, encoded) can take at most.
        self.answer_bytes = self._surbs_per_request * MAX_REPLY_CHUNK
        self._replies = ReplyAssembler(self._session, self._surbs_per_request)
        self._slots = asyncio.Semaphore(max_outstanding)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._timeout = timeout
        self._reader: asyncio.Task[None] | None = None

    async def request(self, request: ExitRequest) -> ExitResponse:
        """The server's answer; NetworkError if none comes back in time."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())
        async with self._slots:
            request_id = self._next_id
            self._next_id = (self._next_id + 1) % 2**32
            surbs = [
                self.client.new_surb(self.exit_address.gateway_id)
                for _ in range(self._surbs_per_request)
            ]
            fragments = request_fragments(self._session, request_id, encode_request(request), surbs)
            too_many = len(fragments) > ExitLimits().max_fragments
            if too_many or len(fragments) + self.client.queued > self.client.settings.outbox:
                raise TooLarge("This request is too large to send through the mixnet.")
            answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = answer
            self._replies.expect(request_id)
            for fragment in fragments:
                self.client.send(self.exit_address, fragment)
            try:
                async with asyncio.timeout(self._timeout):
                    data = await answer
            except TimeoutError:
                raise NetworkError("The server did not answer through the mixnet.") from None
            finally:
                self._waiting.pop(request_id, None)
                self._replies.forget(request_id)
                for surb in surbs:
                    self.client.forget_surb(surb)
        try:
            return decode_response(data)
        except InvalidExitMessage:
            raise NetworkError("The mixnet exit sent an answer that does not parse.") from None

    async def _read(self) -> None:
        while True:
            message = await self.client.receive_reply()
            try:
                whole = self._replies.add(message)
            except InvalidExitMessage:
                continue
            if whole is not None:
                waiter = self._waiting.get(whole[0])
                if waiter is not None and not waiter.done():
                    waiter.set_result(whole[1])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
