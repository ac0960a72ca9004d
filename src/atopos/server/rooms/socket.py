"""One WebSocket of a room: reads frames into the relay's table, writes what it says.

Each connection has a bounded outbound queue drained by its own writer task, so fan-out
never waits on a slow reader: a reader whose queue overflows, or whose one send takes longer
than the send timeout, is closed 4408 (section 13). Binary messages are malformed (4400).
Nothing about the room (its id, a frame) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

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
    RelayRoom,
    SendText,
    WipeRoom,
)
from atopos.protocol.room_wire import Error, encode_frame
from atopos.server.cross_site import is_cross_site
from atopos.server.errors import response_for
from atopos.server.node import Node
from atopos.server.rooms.bus import RoomBus
from atopos.server.rooms.relays import RoomEvent, RoomRelays

__all__ = ["RoomSockets"]

_CHALLENGE_BYTES = 32
_UNKNOWN = encode_frame(Error(code="ended", message="The room has ended or never existed."))
_BINARY = encode_frame(Error(code="malformed", message="A frame is a text message."))


class _Outbox:
    """The frames waiting for one connection, and its close code once decided."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[str | int] = asyncio.Queue(size)
        self.is_closing = False

    def put(self, text: str) -> None:
        if self.is_closing:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(CLOSE_TIMEOUT)  # a reader this far behind is stalled

    def close(self, code: int) -> None:
        if self.is_closing:
            return
        self.is_closing = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(code)
        if self.queue.full():
            # No room for the close marker: empty the queue, then close at once.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(code)


class RoomSockets:
    def __init__(self, node: Node, registry: RoomRelays, bus: RoomBus) -> None:
        self._node = node
        self._registry = registry
        self._bus = bus
        self._outboxes: dict[int, _Outbox] = {}

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
        if not is_held:
            await websocket.send_text(_UNKNOWN)
            await websocket.close(CLOSE_UNKNOWN)
            return
        connection = self._registry.next_connection()
        outbox = _Outbox(self._registry.limits.queued_frames_per_connection)
        self._outboxes[connection] = outbox
        self._bus.subscribe(room_key, connection, outbox.put, outbox.close)
        writer = asyncio.create_task(self._write(websocket, outbox))
        try:
            challenge = self._node.random_bytes(_CHALLENGE_BYTES)
            now = self._node.clock.now()
            opened = await self._step(room_key, lambda room: room.open(connection, challenge, now))
            if opened is None:  # ended meanwhile
                outbox.put(_UNKNOWN)
                outbox.close(CLOSE_UNKNOWN)
            await self.apply(room_key, opened or ())
            reader = asyncio.create_task(self._read(websocket, room_key, connection, outbox))
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            self._bus.unsubscribe(room_key, connection)
            self._outboxes.pop(connection, None)
            now = self._node.clock.now()
            closed = await self._step(room_key, lambda room: room.closed(connection, now))
            await self.apply(room_key, closed or ())
            with contextlib.suppress(Exception):  # a stalled peer cannot hold this task
                timeout = self._registry.limits.send_timeout_seconds
                await asyncio.wait_for(websocket.close(CLOSE_NORMAL_ON_EXIT), timeout)

    async def _read(
        self, websocket: WebSocket, room_key: str, connection: int, outbox: _Outbox
    ) -> None:
        while not outbox.is_closing:
            try:
                message = await websocket.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not isinstance(text, str):
                outbox.put(_BINARY)
                outbox.close(CLOSE_MALFORMED)
                return
            now = self._node.clock.now()

            def receive(room: RelayRoom, text: str = text, now: float = now) -> list[Action]:
                return room.receive(connection, text, now)

            actions = await self._step(room_key, receive)
            if actions is None:
                return
            await self.apply(room_key, actions)

    async def _step(self, room_key: str, event: RoomEvent) -> list[Action] | None:
        """The relay's event applied; None when the room is gone, or the room Redis is down
        (the adapter has told this node's members that their rooms ended)."""
        try:
            return await self._registry.step(room_key, event)
        except Unavailable:
            return None

    async def _write(self, websocket: WebSocket, outbox: _Outbox) -> None:
        timeout = self._registry.limits.send_timeout_seconds
        while True:
            item = await outbox.queue.get()
            if isinstance(item, int):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(item), timeout)
                return
            try:
                await asyncio.wait_for(websocket.send_text(item), timeout)
            except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                return

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
