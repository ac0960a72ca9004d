"""One WebSocket of a room: reads frames into the relay's table, writes what it says.

Fan-out never waits on a slow reader. While a connection keeps up, each frame is written to
its transport at once (the server's `SEND_NOW_EXTENSION`: no task, no queue). Once its
transport is backed up, frames wait in a bounded backlog that a writer task, started only
then, drains through ASGI with the send timeout. A reader whose backlog overflows (in frames
or in bytes: one frame may be 1 MiB), or whose one send takes longer than the send timeout,
is closed 4408 (section 13). Binary messages
are malformed (4400). Nothing about the room (its id, a frame) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Iterable

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from atopos.errors import RateLimited, Unavailable
from atopos.protocol.room_relay import (
    CLOSE_BAD_PROOF,
    CLOSE_MALFORMED,
    CLOSE_RATE_LIMITED,
    CLOSE_TIMEOUT,
    CLOSE_UNKNOWN,
    Action,
    CloseConnection,
    SendText,
    WipeRoom,
)
from atopos.protocol.room_wire import Error, encode_frame
from atopos.server.cross_site import is_cross_site
from atopos.server.errors import response_for
from atopos.server.node import Node
from atopos.server.rooms.bus import RoomBus
from atopos.server.rooms.relays import RoomEvent, RoomRelays
from atopos.server.websocket_protocol import SEND_NOW_EXTENSION, SendNow

__all__ = ["RoomSockets"]

_CHALLENGE_BYTES = 32
_UNKNOWN = encode_frame(Error(code="ended", message="The room has ended or never existed."))
_BINARY = encode_frame(Error(code="malformed", message="A frame is a text message."))
_SEND_FAILED = (TimeoutError, WebSocketDisconnect, RuntimeError, OSError)


class _Outbox:
    """The way out of one connection: straight to the transport while it keeps up, else a
    bounded backlog drained by a writer task; then its close code once decided.

    `finished` is done when the connection is done for: its close was sent, a send failed or
    timed out, or its reader ended. The handler reads in its own task (a reader task of its
    own would cost each idle connection about 1 KiB): while it reads, it is `reading`, and
    `finished` cancels that read.
    """

    __slots__ = (
        "_backlog",
        "_close_code",
        "_is_reading",
        "_max_bytes",
        "_queued_bytes",
        "_send_now",
        "_size",
        "_timeout",
        "_websocket",
        "_writer",
        "finished",
        "is_closing",
        "reading",
    )

    def __init__(
        self,
        websocket: WebSocket,
        send_now: SendNow | None,
        size: int,
        max_bytes: int,
        timeout: float,
    ) -> None:
        self._websocket = websocket
        self._send_now = send_now
        self._size = size
        self._max_bytes = max_bytes
        self._queued_bytes = 0  # the backlog's frames, in characters (ASCII JSON: bytes)
        self._timeout = timeout
        self._backlog: deque[str] | None = None  # made when first needed (an empty one is ~600 B)
        self._writer: asyncio.Task[None] | None = None
        self._close_code: int | None = None
        self._is_reading = True
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_closing = False
        self.reading: asyncio.Task[None] | None = None

    def put(self, text: str) -> None:
        if self.is_closing:
            return
        if self._writer is None and self._send_now is not None and self._send_now(text.encode()):
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        if len(backlog) >= self._size or self._queued_bytes + len(text) > self._max_bytes:
            backlog.clear()  # a reader this far behind is stalled: drop it, not the rest
            self._queued_bytes = 0
            self.close(CLOSE_TIMEOUT)
            return
        backlog.append(text)
        self._queued_bytes += len(text)
        self._start_writer()

    def close(self, code: int) -> None:
        """Send what is queued, then close with `code`."""
        if self.is_closing:
            return
        self.is_closing = True
        self._close_code = code
        self._start_writer()

    async def stop(self) -> None:
        """The handler is done with this connection: stop its writer."""
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def reader_ended(self, _: object = None) -> None:
        """The reader is gone; a running writer still gets to send what it holds."""
        self._is_reading = False
        self.reading = None
        if self._writer is None:
            self._finish()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        reading, self.reading = self.reading, None
        if reading is not None:
            reading.cancel()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            backlog = self._backlog
            while backlog:
                # Taken off first: an overflow may clear the backlog while this send waits.
                text = backlog.popleft()
                self._queued_bytes -= len(text)
                await asyncio.wait_for(self._websocket.send_text(text), self._timeout)
            if self._close_code is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._websocket.close(self._close_code), self._timeout)
                self._finish()
        except _SEND_FAILED:
            self.is_closing = True
            self._finish()
        finally:
            self._writer = None
            if not self._is_reading:
                self._finish()


class RoomSockets:
    def __init__(self, node: Node, registry: RoomRelays, bus: RoomBus) -> None:
        self._node = node
        self._registry = registry
        self._bus = bus
        self._outboxes: dict[int, _Outbox] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The route's ASGI app. (A plain endpoint function would be wrapped by Starlette in
        two more coroutine frames and closures, which every idle connection keeps alive;
        the edge middleware already turns any error into a 1011 close. For the same reason
        this is no coroutine itself: it hands over the endpoint's.)"""
        return self.endpoint(WebSocket(scope, receive=receive, send=send))

    async def endpoint(self, websocket: WebSocket) -> None:
        scope = websocket.scope
        if is_cross_site(scope):
            await websocket.close(CLOSE_BAD_PROOF)  # refused before the handshake completes
            return
        client = self._node.client_identifier(scope)
        try:
            self._registry.open_connection(client)
        except RateLimited:
            await websocket.accept()
            await websocket.close(CLOSE_RATE_LIMITED)
            return
        try:
            await self._serve(websocket)
        finally:
            self._registry.close_connection(client)

    async def _serve(self, websocket: WebSocket) -> None:
        room_key = websocket.path_params.get("room_id", "")
        try:
            is_held = await self._registry.has_room(room_key)
        except Unavailable as down:  # the room Redis is down: refused, with a sentence
            await websocket.send_denial_response(response_for(down))
            return
        await websocket.accept()
        # Read by nothing after the handshake; kept, they would cost every idle member ~1 KiB.
        websocket.scope["headers"] = []
        if not is_held:
            await websocket.send_text(_UNKNOWN)
            await websocket.close(CLOSE_UNKNOWN)
            return
        connection = self._registry.next_connection()
        limits = self._registry.limits
        send_now: SendNow | None = websocket.scope.get("extensions", {}).get(SEND_NOW_EXTENSION)
        outbox = _Outbox(
            websocket,
            send_now,
            limits.queued_frames_per_connection,
            limits.queued_bytes_per_connection,
            limits.send_timeout_seconds,
        )
        self._outboxes[connection] = outbox
        self._bus.subscribe(room_key, connection, outbox.put, outbox.close)
        try:
            challenge = self._node.random_bytes(_CHALLENGE_BYTES)
            now = self._node.clock.now()
            opened = await self._step(room_key, lambda room: room.open(connection, challenge, now))
            if opened is None:  # ended meanwhile
                outbox.put(_UNKNOWN)
                outbox.close(CLOSE_UNKNOWN)
            await self.apply(room_key, opened or ())
            await self._read_until_finished(websocket, room_key, connection, outbox)
        finally:
            self._bus.unsubscribe(room_key, connection)
            self._outboxes.pop(connection, None)
            now = self._node.clock.now()
            closed = await self._step(room_key, lambda room: room.closed(connection, now))
            await self.apply(room_key, closed or ())
            await outbox.stop()
            with contextlib.suppress(Exception):  # a stalled peer cannot hold this task
                timeout = limits.send_timeout_seconds
                await asyncio.wait_for(websocket.close(CLOSE_NORMAL_ON_EXIT), timeout)

    async def _read_until_finished(
        self, websocket: WebSocket, room_key: str, connection: int, outbox: _Outbox
    ) -> None:
        """Read in this task until the peer is gone or the outbox is finished (which cancels
        the read), then wait for the outbox's writer to finish."""
        task = asyncio.current_task()
        assert task is not None
        outbox.reading = task
        try:
            # An error ends the connection through the caller's finally (as the error of a
            # reader task did).
            with contextlib.suppress(Exception):
                while not outbox.is_closing and await self._take(
                    websocket, room_key, connection, outbox
                ):
                    pass
        except asyncio.CancelledError:
            # The outbox's cancel is taken back; any other cancel goes on.
            if not outbox.finished.done() or task.uncancel() > 0:
                raise
        outbox.reader_ended()
        await outbox.finished

    async def _take(
        self, websocket: WebSocket, room_key: str, connection: int, outbox: _Outbox
    ) -> bool:
        """Read and apply one message; False once the connection is done. (Its own frame, so
        that an idle connection's reader holds no last message while it waits.)"""
        try:
            message = await websocket.receive()
        except WebSocketDisconnect:
            return False
        if message["type"] == "websocket.disconnect":
            return False
        text = message.get("text")
        if not isinstance(text, str):
            outbox.put(_BINARY)
            outbox.close(CLOSE_MALFORMED)
            return False
        now = self._node.clock.now()
        actions = await self._step(room_key, lambda room: room.receive(connection, text, now))
        if actions is None:
            return False
        await self.apply(room_key, actions)
        return True

    async def _step(self, room_key: str, event: RoomEvent) -> list[Action] | None:
        """The relay's event applied; None when the room is gone, or the room Redis is down
        (the adapter has told this node's members that their rooms ended)."""
        try:
            return await self._registry.step(room_key, event)
        except Unavailable:
            return None

    async def apply(self, room_key: str, actions: Iterable[Action]) -> None:
        """Carry out what the relay's table decided."""
        for action in actions:
            if isinstance(action, SendText):
                await self._bus.publish(room_key, action.connections, action.text)
            elif isinstance(action, CloseConnection):
                outbox = self._outboxes.get(action.connection)
                if outbox is not None:
                    outbox.close(action.code)
                self._bus.unsubscribe(room_key, action.connection)
            elif isinstance(action, WipeRoom):
                self._bus.drop_room(room_key)
                self._registry.wipe(room_key)


CLOSE_NORMAL_ON_EXIT = 1000
