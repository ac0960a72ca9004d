"""The room bus over Redis sharded pub/sub: what the relay decides reaches connections on
every node (issue 22, docs/protocol/rooms.md section 14).

Each room has one channel, `atopos:room:{<room id>}:frames`, in the hash slot of the room's
state key (server/rooms/redis_relays.py), so that the script that changes a room's state
publishes its outcome on the same Cluster node, in the same atomic step. One message on it
is one batch of the relay's actions (`encode_actions`): texts for connections, closes, the
wipe. Every node subscribed to the channel carries out the part that concerns its own
connections, in channel order, which is the order of the state's changes.

A node subscribes to a room's channel (SSUBSCRIBE, on the Cluster node that owns its slot,
or on the one Redis) when its first connection to the room subscribes, and waits for Redis
to confirm before it publishes anything for that room (`ready`), so that it never misses
the answer to its own connection's first frame. The subscription lasts until the room is
dropped. A subscription connection that fails calls `on_lost` (the room Redis is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from atopos.protocol.room_relay import Action, CloseConnection, SendText, WipeRoom
from atopos.server.rooms.bus import Close, Deliver
from atopos.storage.redis_clients import async_server_client

__all__ = ["RedisRoomBus", "channel_of", "decode_actions", "encode_actions"]

_log = logging.getLogger("atopos.server")
_SEND, _CLOSE, _WIPE = 0, 1, 2
_encoder = msgspec.msgpack.Encoder()
# How long a subscription may take to be confirmed before the room Redis counts as down.
_SUBSCRIBE_TIMEOUT = 5.0
_POLL_SECONDS = 1.0


def channel_of(room: str) -> str:
    """The room's channel; `{room}` is its hash tag, shared with its state key."""
    return f"atopos:room:{{{room}}}:frames"


def encode_actions(actions: Iterable[Action]) -> bytes:
    """A batch of the relay's actions as one channel message (MessagePack arrays:
    [0, [connections], text], [1, connection, code], [2])."""
    batch: list[list[object]] = []
    for action in actions:
        if isinstance(action, SendText):
            batch.append([_SEND, list(action.connections), action.text])
        elif isinstance(action, CloseConnection):
            batch.append([_CLOSE, action.connection, action.code])
        elif isinstance(action, WipeRoom):
            batch.append([_WIPE])
    return _encoder.encode(batch)


def decode_actions(data: bytes) -> list[Action]:
    """The actions `encode_actions` encoded (ValueError for anything else)."""
    try:
        batch = msgspec.msgpack.decode(data, type=list[list[object]])
    except msgspec.DecodeError as exc:
        raise ValueError("not an action batch") from exc
    actions: list[Action] = []
    for item in batch:
        match item:
            case [0, list(connections), str(text)]:
                actions.append(SendText(tuple(int(str(c)) for c in connections), text))
            case [1, int(connection), int(code)]:
                actions.append(CloseConnection(connection, code))
            case [2]:
                actions.append(WipeRoom())
            case _:
                raise ValueError("not an action batch")
    return actions


class _Listener:
    """One subscription connection to one Redis server, and the task that reads it."""

    def __init__(self, pubsub: PubSub, task: asyncio.Task[None]) -> None:
        self.pubsub = pubsub
        self.task = task
        # Subscriptions one at a time: two first SSUBSCRIBEs at once race to connect, and
        # redis-py loses one of them.
        self.subscribing = asyncio.Lock()


class RedisRoomBus:
    """One node's end of the room channels: local subscriptions, delivered from Redis."""

    def __init__(
        self,
        client: redis.asyncio.Redis | AsyncRedisCluster,
        url: str,
        *,
        on_lost: Callable[[], None],
        client_name: str = "atopos-rooms-bus",
    ) -> None:
        self._client = client
        self._url = url
        self._on_lost = on_lost
        self._client_name = client_name
        self._rooms: dict[str, dict[int, tuple[Deliver, Close | None]]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._listeners: dict[str, _Listener] = {}
        self._channel_listener: dict[str, str] = {}
        self._published: dict[str, int] = {}
        self._received: dict[str, int] = {}
        self._progress = asyncio.Event()

    # -- the RoomBus port ----------------------------------------------------------------------

    def subscribe(
        self, room: str, connection: int, deliver: Deliver, close: Close | None = None
    ) -> None:
        self._rooms.setdefault(room, {})[connection] = (deliver, close)
        if room not in self._confirmed:
            self._confirmed[room] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._subscribe_channel(room))
            task.add_done_callback(_retrieve)

    def unsubscribe(self, room: str, connection: int) -> None:
        subscribers = self._rooms.get(room)
        if subscribers is not None:
            subscribers.pop(connection, None)

    async def publish(self, room: str, connections: tuple[int, ...], text: str) -> None:
        await self.ready(room)
        await self._client.execute_command(
            "SPUBLISH", channel_of(room), encode_actions([SendText(connections, text)])
        )
        self.published(room)

    def drop_room(self, room: str) -> None:
        self._rooms.pop(room, None)
        confirmed = self._confirmed.pop(room, None)
        if confirmed is not None and not confirmed.done():
            confirmed.cancel()
        name = self._channel_listener.pop(room, None)
        listener = self._listeners.get(name) if name is not None else None
        if listener is not None:
            task = asyncio.ensure_future(listener.pubsub.sunsubscribe(channel_of(room)))
            task.add_done_callback(_retrieve)
        self._published.pop(room, None)
        self._received.pop(room, None)

    def subscriptions(self, room: str) -> int:
        return len(self._rooms.get(room, {}))

    async def settle(self) -> None:
        """Return once every batch this node published to a room it listens to came back."""
        while any(self._received.get(room, 0) < n for room, n in self._published.items()):
            self._progress.clear()
            await asyncio.wait_for(self._progress.wait(), _SUBSCRIBE_TIMEOUT)

    # -- for the relays ------------------------------------------------------------------------

    async def ready(self, room: str) -> None:
        """Return once this node's subscription to `room`'s channel, if it has one, is
        confirmed by Redis; raise ConnectionError when it cannot be."""
        confirmed = self._confirmed.get(room)
        if confirmed is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), _SUBSCRIBE_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if confirmed.cancelled() and room not in self._confirmed:
                return  # dropped meanwhile: nothing to wait for
            raise ConnectionError("room channel not confirmed") from exc

    def published(self, room: str) -> None:
        """Count one batch published for `room` by this node (for `settle`)."""
        if room in self._confirmed:
            self._published[room] = self._published.get(room, 0) + 1

    def has_room(self, room: str) -> bool:
        """Whether this node has connections subscribed to `room`."""
        return bool(self._rooms.get(room))

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def end_locally(self, room: str, text: str, code: int) -> None:
        """Tell every local connection of `room` `text`, close it with `code`, forget it."""
        for deliver, close in list(self._rooms.get(room, {}).values()):
            deliver(text)
            if close is not None:
                close(code)
        self.drop_room(room)

    async def close(self) -> None:
        """Stop every subscription connection (the node stops, or Redis was lost)."""
        listeners, self._listeners = list(self._listeners.values()), {}
        self._channel_listener.clear()
        for listener in listeners:
            listener.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener.task
            with contextlib.suppress(Exception):
                await listener.pubsub.aclose()  # type: ignore[no-untyped-call]
        for room, confirmed in list(self._confirmed.items()):
            if not confirmed.done():
                confirmed.cancel()
            del self._confirmed[room]

    # -- inside --------------------------------------------------------------------------------

    async def _subscribe_channel(self, room: str) -> None:
        channel = channel_of(room)
        try:
            name, listener = await self._listener_for(channel)
            self._channel_listener[room] = name
            async with listener.subscribing:
                await listener.pubsub.ssubscribe(channel)
        except Exception:
            _log.warning("room channel subscription failed", exc_info=False)
            self._lost()

    async def _listener_for(self, channel: str) -> tuple[str, _Listener]:
        host: str | None = None
        port: int | None = None
        if isinstance(self._client, AsyncRedisCluster):
            await self._client.initialize()
            node = self._client.get_node_from_key(channel)
            if node is None:
                raise ConnectionError("no Cluster node holds the room's slot")
            host, port = str(node.host), int(node.port)
        name = f"{host}:{port}"
        listener = self._listeners.get(name)
        if listener is None:
            server = async_server_client(
                self._url, client_name=self._client_name, host=host, port=port
            )
            pubsub = server.pubsub()
            listener = _Listener(pubsub, asyncio.create_task(self._listen(pubsub)))
            self._listeners[name] = listener
        return name, listener

    async def _listen(self, pubsub: PubSub) -> None:
        try:
            while True:
                if not pubsub.subscribed:
                    await asyncio.sleep(0.01)  # the first SSUBSCRIBE is being sent
                    continue
                message = await pubsub.get_message(timeout=_POLL_SECONDS)
                if message is not None:
                    self._dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.warning("room channel connection lost")
            self._lost()

    def _dispatch(self, message: dict[str, object]) -> None:
        kind = _text(message.get("type"))
        channel = _text(message.get("channel"))
        room = channel.removeprefix("atopos:room:{").removesuffix("}:frames")
        if kind == "ssubscribe":
            confirmed = self._confirmed.get(room)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        if kind != "smessage":
            return
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        self._received[room] = self._received.get(room, 0) + 1
        self._progress.set()
        try:
            actions = decode_actions(data)
        except ValueError:
            _log.error("room channel message not understood")
            return
        self.deliver(room, actions)

    def deliver(self, room: str, actions: Sequence[Action]) -> None:
        """Carry out the local part of one batch: texts and closes for this node's
        connections, the wipe."""
        for action in actions:
            subscribers = self._rooms.get(room)
            if isinstance(action, SendText):
                if subscribers is None:
                    continue
                for connection in action.connections:
                    entry = subscribers.get(connection)
                    if entry is not None:
                        entry[0](action.text)
            elif isinstance(action, CloseConnection):
                entry = subscribers.pop(action.connection, None) if subscribers else None
                if entry is not None and entry[1] is not None:
                    entry[1](action.code)
            elif isinstance(action, WipeRoom):
                self.drop_room(room)

    def _lost(self) -> None:
        self._on_lost()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failure is handled by `_lost`, not logged again
