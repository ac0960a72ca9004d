"""The exit's WebSockets: one per client session, held for the client between its requests
(docs/protocol/mixnet.md, "Streams"), so that room frames cross the mixnet unchanged.

WSOPEN opens the session's WebSocket to a path of the server; WSPOLL sends the numbered
frames it carries, in order, and answers (at once if frames wait, else within `poll_wait`)
with the server's frames, numbered; WSCLOSE closes it. The client keeps a poll outstanding
so the server's frames leave as soon as they come. Capped: streams in total, frames queued
from the server, and a stream without a request for `idle_seconds` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from atopos.client.transport import Transport
from atopos.clock import Clock
from atopos.errors import AtoposError
from atopos.protocol.mix_exit import ExitRequest, ExitResponse
from atopos.protocol.mix_stream import (
    FIRST_FRAMES_HEADER,
    FrameReorder,
    InvalidBatch,
    decode_batch,
    encode_batch,
    frame_bytes,
)

__all__ = ["FIRST_FRAMES_WAIT", "STREAM_METHODS", "ExitStreams"]

STREAM_METHODS = frozenset({"WSOPEN", "WSPOLL", "WSCLOSE"})
_QUEUED_FROM_SERVER = 512
_CLOSE_CODE_HEADER = "x-atopos-close-code"
_CLOSE_TOO_BIG = 1009
# How long a WSOPEN with FIRST_FRAMES_HEADER waits for the server's first frame (a relay
# sends its challenge as soon as it accepts the connection).
FIRST_FRAMES_WAIT = 2.0


@dataclass(slots=True)
class _Stream:
    socket: ClientConnection
    stack: contextlib.AsyncExitStack
    last_used: float
    outgoing: FrameReorder = field(default_factory=FrameReorder)
    incoming: list[str | bytes] = field(default_factory=list)
    next_incoming_seq: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    closed_code: int | None = None
    reader: asyncio.Task[None] | None = None


def _answer(status: int, body: bytes = b"", code: int | None = None) -> ExitResponse:
    headers = ((_CLOSE_CODE_HEADER, str(code)),) if code is not None else ()
    return ExitResponse(status, headers, body)


class ExitStreams:
    """The WebSockets of all sessions, to the server at `server_url`."""

    def __init__(
        self,
        server_url: str,
        clock: Clock,
        *,
        max_streams: int = 256,
        poll_wait: float = 15.0,
        idle_seconds: float = 60.0,
    ) -> None:
        self._transport = Transport(server_url)
        self._clock = clock
        self._max_streams = max_streams
        self._poll_wait = poll_wait
        self._idle_seconds = idle_seconds
        self._streams: dict[bytes, _Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    async def handle(self, session: bytes, request: ExitRequest, budget: int) -> ExitResponse:
        """Answer one stream request of `session`; the answer's body is at most `budget`."""
        await self.sweep()
        if request.method == "WSOPEN":
            opened = await self._open(session, request.path)
            if opened.status != 200 or (FIRST_FRAMES_HEADER, "1") not in request.headers:
                return opened
            return await self._first_frames(session, budget)
        stream = self._streams.get(session)
        if stream is None:
            return _answer(410, code=1006)
        stream.last_used = self._clock.monotonic()
        if request.method == "WSCLOSE":
            await self._close(session)
            return _answer(200)
        try:
            first, frames = decode_batch(request.body)
            ready = stream.outgoing.add(first, frames)
        except InvalidBatch:
            return _answer(400)
        with contextlib.suppress(ConnectionClosed):
            for frame in ready:
                await stream.socket.send(frame)
        if not stream.incoming and stream.closed_code is None:
            stream.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.arrived.wait(), self._poll_wait)
        answer = self._drain(stream, budget)
        if answer.status == 410:
            await self._close(session)
        return answer

    async def _first_frames(self, session: bytes, budget: int) -> ExitResponse:
        """The just-opened stream's first frames (possibly none), as a WSPOLL answer."""
        stream = self._streams[session]
        if not stream.incoming and stream.closed_code is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.arrived.wait(), FIRST_FRAMES_WAIT)
        answer = self._drain(stream, budget)
        if answer.status == 410:
            await self._close(session)
        return answer

    def _drain(self, stream: _Stream, budget: int) -> ExitResponse:
        taken: list[str | bytes] = []
        used = 4
        while stream.incoming and used + frame_bytes(stream.incoming[0]) <= budget:
            frame = stream.incoming.pop(0)
            used += frame_bytes(frame)
            taken.append(frame)
        if not taken and stream.incoming:
            # One frame larger than any answer this client's SURBs carry: it could never be
            # delivered, so the stream ends as a WebSocket would (1009, message too big).
            stream.incoming.clear()
            stream.closed_code = _CLOSE_TOO_BIG
        first = stream.next_incoming_seq
        stream.next_incoming_seq += len(taken)
        if not taken and stream.closed_code is not None:
            return _answer(410, code=stream.closed_code)
        return _answer(200, encode_batch(first, taken))

    async def _open(self, session: bytes, path: str) -> ExitResponse:
        if session in self._streams:
            return _answer(409)
        if len(self._streams) >= self._max_streams:
            return _answer(503)
        stack = contextlib.AsyncExitStack()
        try:
            socket = await stack.enter_async_context(self._transport.websocket(path))
        except InvalidStatus as refused:
            await stack.aclose()
            return _answer(refused.response.status_code)
        except (AtoposError, OSError, ConnectionClosed):
            await stack.aclose()
            return _answer(502)
        stream = _Stream(socket, stack, self._clock.monotonic())
        stream.reader = asyncio.get_running_loop().create_task(self._read(stream))
        self._streams[session] = stream
        return _answer(200)

    async def _read(self, stream: _Stream) -> None:
        try:
            while True:
                frame = await stream.socket.recv()
                if len(stream.incoming) >= _QUEUED_FROM_SERVER:
                    break  # the client stopped polling: give the seat up
                stream.incoming.append(frame)
                stream.arrived.set()
        except ConnectionClosed:
            pass
        stream.closed_code = stream.socket.close_code or 1006
        stream.arrived.set()

    async def _close(self, session: bytes) -> None:
        stream = self._streams.pop(session, None)
        if stream is None:
            return
        if stream.reader is not None:
            stream.reader.cancel()
        with contextlib.suppress(Exception):
            await stream.stack.aclose()

    async def sweep(self) -> None:
        """Close the streams no request used for `idle_seconds`."""
        now = self._clock.monotonic()
        for session, stream in list(self._streams.items()):
            if now - stream.last_used >= self._idle_seconds:
                await self._close(session)

    async def close(self) -> None:
        for session in list(self._streams):
            await self._close(session)
