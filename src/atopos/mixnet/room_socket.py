"""A room's WebSocket through the mixnet (`atopos room join --mixnet TOPOLOGY`): the exit
holds the real WebSocket to the relay; this side speaks WSOPEN / WSPOLL / WSCLOSE to it
(docs/protocol/mixnet.md, "Streams") and looks like a WebSocket to `RoomSession`, so the
room protocol is unchanged and the relay only ever sees the exit.

One poll is always outstanding so the relay's frames come back as soon as they arrive;
each `send` is one more poll that carries the frame. Frames are numbered both ways and put
back in order, since the mixnet delays every request and answer independently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from atopos.clock import Clock
from atopos.crypto.randomness import RandomBytes, draw
from atopos.errors import NetworkError
from atopos.mixnet.client import MixnetClient
from atopos.mixnet.exit_client import ExitConnection
from atopos.mixnet.settings import ClientSettings
from atopos.protocol.mix_exit import ExitRequest, ExitResponse
from atopos.protocol.mix_route import choose_index
from atopos.protocol.mix_stream import (
    FIRST_FRAMES_HEADER,
    FrameReorder,
    InvalidBatch,
    decode_batch,
    encode_batch,
)
from atopos.protocol.mix_topology import Topology

__all__ = ["MixnetRoomSocket", "MixnetWebSocketOpener"]

_CLOSE_CODE_HEADER = "x-atopos-close-code"


class MixnetRoomSocket:
    """send / recv / close, as `client.rooms.RoomSocket` needs, over an `ExitConnection`."""

    def __init__(self, exit_connection: ExitConnection) -> None:
        self._exit = exit_connection
        self._next_out = 0
        self._incoming = FrameReorder()
        self._ready: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self.close_code: int | None = None

    def _spawn(self, frames: list[str | bytes]) -> None:
        first = self._next_out
        self._next_out += len(frames)
        task = asyncio.get_running_loop().create_task(self._poll(encode_batch(first, frames)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self, opened: ExitResponse) -> None:
        """Take the frames the WSOPEN answer carried (an exit that predates the first-frames
        header answers with an empty body), then put the standing poll out."""
        if opened.body:
            self._take(opened)
        if self.close_code is None:
            self._spawn([])

    async def _poll(self, body: bytes) -> None:
        try:
            answer = await self._exit.request(ExitRequest("WSPOLL", "/", (), body))
        except NetworkError:
            self._closed(1006)
            return
        self._take(answer)
        if self.close_code is None and body[4:] == b"":
            self._spawn([])  # the standing poll came back: put the next one out

    def _take(self, answer: ExitResponse) -> None:
        if answer.status == 410:
            code = dict(answer.headers).get(_CLOSE_CODE_HEADER, "1006")
            self._closed(int(code) if code.isdigit() else 1006)
            return
        if answer.status != 200:
            self._closed(1011)
            return
        try:
            first, frames = decode_batch(answer.body)
            for frame in self._incoming.add(first, frames):
                self._ready.put_nowait(frame)
        except InvalidBatch:
            self._closed(1002)

    def _closed(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            self._ready.put_nowait(None)

    async def send(self, message: str) -> None:
        if self.close_code is not None:
            raise ConnectionClosed(Close(self.close_code, ""), None)
        self._spawn([message])

    async def recv(self) -> str | bytes:
        frame = await self._ready.get()
        if frame is None:
            self._ready.put_nowait(None)
            raise ConnectionClosed(Close(self.close_code or 1006, ""), None)
        return frame

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.close_code is None:
            self._closed(1000)
            with contextlib.suppress(NetworkError, asyncio.TimeoutError):
                async with asyncio.timeout(10):
                    await self._exit.request(ExitRequest("WSCLOSE", "/", (), b""))


class MixnetWebSocketOpener:
    """`websocket(path)` for a `Transport`: each use starts a mixnet client with a fresh
    mailbox at a random gateway, opens the path at the topology's first exit, and stops
    both when the block ends."""

    def __init__(
        self,
        topology: Topology,
        clock: Clock,
        random_bytes: RandomBytes,
        settings: ClientSettings | None = None,
        *,
        on_client: Callable[[MixnetClient], None] | None = None,
    ) -> None:
        if not topology.exits:
            raise NetworkError("The mixnet topology names no exit service for Atopos.")
        self._topology = topology
        self._clock = clock
        self._random_bytes = random_bytes
        self._settings = settings or ClientSettings()
        self._on_client = on_client

    @contextlib.asynccontextmanager
    async def __call__(self, path: str) -> AsyncIterator[MixnetRoomSocket]:
        gateways = self._topology.gateways
        client = MixnetClient(
            self._topology,
            gateways[choose_index(self._random_bytes, len(gateways))],
            X25519PrivateKey.from_private_bytes(draw(self._random_bytes, 32)),
            draw(self._random_bytes, 32),
            self._clock,
            self._random_bytes,
            self._settings,
        )
        await client.start()
        if self._on_client is not None:
            self._on_client(client)
        exit_connection = ExitConnection(client, self._topology.exits[0], self._random_bytes)
        try:
            opened = await exit_connection.request(
                ExitRequest("WSOPEN", path, ((FIRST_FRAMES_HEADER, "1"),), b"")
            )
            if opened.status != 200:
                raise NetworkError(f"The exit could not reach the room relay ({opened.status}).")
            socket = MixnetRoomSocket(exit_connection)
            socket.start(opened)
            try:
                yield socket
            finally:
                await socket.close()
        finally:
            await exit_connection.close()
            await client.close()
