"""Rooms shared by several nodes: the relay state of each room in the room Redis (issue 22).

Layout (docs/protocol/rooms.md section 14, docs/operations.md):

- `atopos:room:{<room id>}`: a hash, `v` (a version, counted up by every change) and `s`
  (`dump_room` of the `RelayRoom`), expiring with the room (its TTL plus the closing grace
  and a minute).
- `atopos:room:{<room id>}:frames`: the room's sharded pub/sub channel (redis_bus.py).
- `atopos:room-index`: a sorted set of room ids by expiry, for the nodes' tickers.
- `atopos:room-nodes`: a sorted set of node tags by their last heartbeat.
- `atopos:room-challenge:<hex>`: a spent creation challenge, until its expiry.

An event is applied optimistically: the node loads the state (or its cached copy), runs the
event of `RelayRoom`'s table on it, and hands the new state and the encoded actions to one
script that writes them only if the version is still the one it read, and publishes the
actions on the room's channel in the same atomic step. On a version conflict it runs the
event again on the state the script answered. So two nodes never fork a room's sequence,
and the channel carries the batches in the order of the state's changes.

A connection id is the node's tag (31 random bits, drawn at start and after every outage)
times 2**32 plus a counter. Each node adds its tag to `atopos:room-nodes` every
`heartbeat_seconds`; a tag not seen for `liveness_seconds` is dead, and the next node to
tick a room closes the dead node's connections in it (the relay's `closed`: leaves, a new
epoch), so a node killed with SIGKILL loses only its own connections.

The room Redis must not persist (storage/ephemeral_redis.py, checked at start and after
every outage). When it fails, the node ends every room it has connections in for its
members (an `ended` error, close 4404), refuses new room connections (503) and creations,
and tries again every heartbeat; back, it draws a new tag, so that the connections it had
count as a dead node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisClusterException, RedisError

from atopos.clock import Clock
from atopos.crypto.randomness import RandomBytes
from atopos.errors import Refused, Unavailable
from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_relay import (
    CLOSE_UNKNOWN,
    Action,
    RelayRoom,
    WipeRoom,
)
from atopos.protocol.room_relay_snapshot import dump_room, load_room
from atopos.protocol.room_wire import Error, encode_frame
from atopos.server.identity import ClientId
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.server.rooms.redis_bus import RedisRoomBus, channel_of, encode_actions
from atopos.server.rooms.registry import RoomIdTaken, RoomRegistry
from atopos.server.rooms.relays import RoomEvent
from atopos.storage.ephemeral_redis import EphemeralUse, PersistenceCheck, check_at_start
from atopos.storage.redis_clients import async_client
from atopos.storage.redis_scripts import LuaScript

__all__ = ["ROOM_STATE", "RedisRoomRelays", "check_room_redis", "state_key_of"]

_log = logging.getLogger("atopos.server")
_T = TypeVar("_T")

ROOM_STATE = EphemeralUse(
    opt_out_variable="ATOPOS_ROOM_REDIS_PERSISTENT_OK",
    unavailable_message="Rooms are unavailable on this server right now; try again shortly.",
    default_subject="The room Redis",
    explicit_subject="The Redis of ATOPOS_ROOM_REDIS_URL",
    fix=(
        "point ATOPOS_ROOM_REDIS_URL at a Redis without persistence "
        "(deploy/redis/atopos-rooms.conf)"
    ),
    at_risk="room state (rosters, relay secrets, sequence numbers)",
    checked="room states",
    unreachable_at_start="room redis unreachable at start; rooms are refused until it answers",
    refused_later=(
        "room redis may write room state to disk; rooms are refused "
        "until it persists nothing (docs/operations.md)"
    ),
    logger="atopos.server",
    client_name="atopos-rooms-check",
)

_INDEX = b"atopos:room-index"
_NODES = b"atopos:room-nodes"
_ENDED = encode_frame(Error(code="ended", message="The room has ended: its relay lost its state."))
_TAG_BITS = 31
# Redis calls in flight at once per node (each may hold a pooled connection).
_CONCURRENT_CALLS = 16
# The index outlives its longest room (7 days) by a day; every creation renews it.
_INDEX_TTL_SECONDS = 8 * 24 * 3600
_MAX_ATTEMPTS = 200
# Kept after a room's expiry: the closing grace, then a margin for the last ticks.
_KEY_MARGIN_SECONDS = 60.0

# KEYS: state, channel. ARGV: expected version, new state ('' to delete), TTL (ms), batch
# ('' for none). Returns 1 (written, published), 0 (no such room), or {version, state}
# (the version moved on: nothing written).
_APPLY = LuaScript(
    """
local current = redis.call('HGET', KEYS[1], 'v')
if not current then
  return 0
end
if current ~= ARGV[1] then
  return {current, redis.call('HGET', KEYS[1], 's')}
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', tostring(tonumber(current) + 1), 's', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('SPUBLISH', KEYS[2], ARGV[4])
end
return 1
"""
)

# KEYS: state. ARGV: state, TTL (ms). Returns 1, or 0 when the id is taken.
_CREATE = LuaScript(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', '1', 's', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)


def state_key_of(room: str) -> bytes:
    """The room's state key; `{room}` is its hash tag, shared with its channel."""
    return f"atopos:room:{{{room}}}".encode()


class RedisRoomRelays:
    """The `RoomRelays` port on the room Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        limits: RoomNodeLimits,
        *,
        clock: Clock,
        random_bytes: RandomBytes,
        check: PersistenceCheck | None,
        heartbeat_seconds: float = 1.0,
        liveness_seconds: float = 5.0,
    ) -> None:
        self.limits = limits
        self._url = url
        self._clock = clock
        self._random_bytes = random_bytes
        self._check = check
        self._heartbeat_seconds = heartbeat_seconds
        self._liveness_seconds = liveness_seconds
        # The node-wide caps are the in-memory registry's (per node, not shared).
        self._local = RoomRegistry(limits)
        self._client: redis.asyncio.Redis | AsyncRedisCluster = async_client(
            url, client_name="atopos-rooms"
        )
        self.bus = RedisRoomBus(self._client, url, on_lost=self._lost)
        self._tag = self._draw_tag()
        self._counter = 0
        # Per room: the version and state this node last read or wrote, and that state
        # decoded (decoding a 500-member room costs about 9 ms, encoding it 1 ms).
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._alive: set[int] = set()
        self._is_up = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._calls = asyncio.Semaphore(_CONCURRENT_CALLS)

    # -- life ----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover()
        self._heartbeat = asyncio.create_task(self._beat_forever())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.bus.close()
        with contextlib.suppress(RedisError, OSError):
            await self._client.zrem(_NODES, str(self._tag))
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def check(self) -> None:
        if not self._is_up:
            raise Unavailable(ROOM_STATE.unavailable_message)

    @property
    def tag(self) -> int:
        """This node's current tag (the high bits of its connection ids)."""
        return self._tag

    # -- the port ------------------------------------------------------------------------------

    async def has_room(self, room_key: str) -> bool:
        self.check()
        return bool(await self._redis(self._client.exists(state_key_of(room_key))))

    async def create(self, creation: RoomCreation, client: ClientId, now: float) -> RelayRoom:
        self.check()
        if await self._redis(self._client.zcard(_INDEX)) >= self.limits.max_rooms:
            raise Unavailable("This server holds as many rooms as it can; try later.")
        self._local.count_creation(client, now)
        room = RelayRoom(creation, created_at=now, limits=self.limits.relay)
        key = state_key_of(creation.room_id)
        is_new = await self._redis(
            _CREATE(self._client, [key], [dump_room(room), self._ttl_ms(room, now)])
        )
        if not is_new:
            raise RoomIdTaken("That room id is in use; draw another.")
        await self._redis(self._client.zadd(_INDEX, {creation.room_id: room.expires_at}))
        await self._redis(self._client.expire(_INDEX, _INDEX_TTL_SECONDS))
        return room

    async def spend_challenge(self, challenge_id: bytes, expires_at: float, now: float) -> None:
        self.check()
        key = b"atopos:room-challenge:" + challenge_id.hex().encode()
        ttl_ms = max(1, int((expires_at - now) * 1000))
        if not await self._redis(self._client.set(key, b"1", nx=True, px=ttl_ms)):
            raise Refused("This challenge was already used; ask for a new one.")

    async def step(self, room_key: str, event: RoomEvent) -> list[Action] | None:
        self.check()
        # One event of a room at a time on this node: the cached state is the last written.
        async with self._locks.setdefault(room_key, asyncio.Lock()):
            return await self._redis(self._step(room_key, event))

    async def tick_rooms(self, now: float) -> list[tuple[str, list[Action]]]:
        """Tick every room in the index (each node does: the script keeps it consistent),
        closing first the connections of nodes whose heartbeat stopped."""
        if not self._is_up:
            return []
        self._local.sweep(now)
        try:
            await self._redis(self._client.zremrangebyscore(_INDEX, "-inf", now - 3600))
            rooms = await self._redis(self._client.zrange(_INDEX, 0, -1))
            self._alive = await self._alive_tags(now)
        except Unavailable:
            return []
        for raw in rooms:
            room_key = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                await self._drop_stale(room_key)
                ticked = await self.step(
                    room_key, lambda room: self._reap(room, now) + room.tick(now)
                )
                if ticked is None:  # expired with its key: out of the index too
                    await self._redis(self._client.zrem(_INDEX, room_key))
            except Unavailable:
                return []
        return []

    async def _drop_stale(self, room_key: str) -> None:
        """Forget the cached state of a room that another node changed since: a tick on a
        stale copy could see nothing due (a dead node's connections it never saw)."""
        cached = self._cache.get(room_key)
        if cached is not None:
            version = await self._redis(self._client.hget(state_key_of(room_key), "v"))
            if version is None or _bytes(version) != cached.version:
                self._cache.pop(room_key, None)

    def wipe(self, room_key: str) -> None:
        self._forget(room_key)

    def _forget(self, room_key: str) -> None:
        self._cache.pop(room_key, None)
        lock = self._locks.get(room_key)
        if lock is not None and not lock.locked():
            del self._locks[room_key]

    def next_connection(self) -> int:
        self._counter += 1
        return (self._tag << 32) | (self._counter & 0xFFFFFFFF)

    def open_connection(self, client: ClientId) -> None:
        self._local.open_connection(client)

    def close_connection(self, client: ClientId) -> None:
        self._local.close_connection(client)

    def open_connections(self) -> int:
        return self._local.open_connections()

    # -- one event -----------------------------------------------------------------------------

    async def _step(self, room_key: str, event: RoomEvent) -> list[Action] | None:
        await self.bus.ready(room_key)
        key = state_key_of(room_key)
        channel = channel_of(room_key).encode()
        # Taken out while the event runs on it: the event changes the decoded room in place,
        # so it goes back only as the state that was written.
        cached = self._cache.pop(room_key, None)
        if cached is None:
            version, data = await self._client.hmget(key, ["v", "s"])
            if version is None or data is None:
                return self._gone(room_key)
            cached = _Cached(_bytes(version), _bytes(data))
        for _ in range(_MAX_ATTEMPTS):
            room = cached.room if cached.room is not None else load_room(cached.data)
            now = self._clock.now()
            actions = event(room)
            is_wiped = any(isinstance(action, WipeRoom) for action in actions)
            new = b"" if is_wiped else dump_room(room)
            if not actions and new == cached.data:
                self._cache[room_key] = _Cached(cached.version, new, room)
                return []
            batch = encode_actions(actions) if actions else b""
            answer = await _APPLY(
                self._client, [key, channel], [cached.version, new, self._ttl_ms(room, now), batch]
            )
            if answer == 1:
                if actions:
                    self.bus.published(room_key)
                if is_wiped:
                    self._forget(room_key)
                    await self._client.zrem(_INDEX, room_key)
                else:
                    version = str(int(cached.version) + 1).encode()
                    self._cache[room_key] = _Cached(version, new, room)
                return []
            if answer == 0:
                return self._gone(room_key)
            cached = _Cached(_bytes(answer[0]), _bytes(answer[1]))  # another node's change
            # Another node is writing this room fast: give it a moment, at random, so that
            # both get their turns (a decode costs this node a window the other may fill).
            await asyncio.sleep(int.from_bytes(self._random_bytes(1), "big") / 256 * 0.005)
        raise Unavailable("This room is too busy right now; try again.")

    def _gone(self, room_key: str) -> list[Action] | None:
        """The state key is gone (wiped, expired, or Redis restarted empty): this node's
        connections to the room are told it ended."""
        self._forget(room_key)
        if self.bus.has_room(room_key):
            self.bus.end_locally(room_key, _ENDED, CLOSE_UNKNOWN)
        return None

    def _reap(self, room: RelayRoom, now: float) -> list[Action]:
        """Close the connections of nodes that stopped beating (their `closed` event)."""
        actions: list[Action] = []
        for connection in list(room.connections):
            tag = connection >> 32
            if tag != self._tag and tag not in self._alive:
                actions += room.closed(connection, now)
        return actions

    def _ttl_ms(self, room: RelayRoom, now: float) -> int:
        until = room.expires_at + room.limits.closing_seconds + _KEY_MARGIN_SECONDS
        return max(1000, int((until - now) * 1000))

    # -- liveness and outages ------------------------------------------------------------------

    async def _alive_tags(self, now: float) -> set[int]:
        since = now - self._liveness_seconds
        tags = await self._client.zrangebyscore(_NODES, since, "+inf")
        return {int(_bytes(tag)) for tag in tags}

    async def _beat(self, *, is_first: bool = False) -> None:
        """Say this node is alive. Raise _Missed when its last heartbeat is not there or
        too old: the Redis restarted (maybe as another one), or the other nodes took this
        node for dead and closed its connections in their rooms."""
        now = self._clock.now()
        if self._check is not None:
            await self._check.ensure()
        if not is_first:
            last = await self._client.zscore(_NODES, str(self._tag))
            if last is None or now - float(last) > self._liveness_seconds:
                raise _Missed("restarted" if last is None else "stalled")
        await self._client.zadd(_NODES, {str(self._tag): now})
        await self._client.zremrangebyscore(_NODES, "-inf", now - 10 * self._liveness_seconds)
        await self._client.expire(_NODES, int(10 * self._liveness_seconds) + 1)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            if not self._is_up:
                await self._recover()
                continue
            try:
                await self._beat()
            except _Missed as missed:
                self._lost(str(missed))
            except (RedisError, RedisClusterException, OSError, Unavailable) as exc:
                self._lost(type(exc).__name__)
            except Exception:
                _log.error("room heartbeat failed", exc_info=True)

    async def _recover(self) -> None:
        """Try to (re)connect: persistence checked, a new tag, a first heartbeat."""
        if self._check is not None:
            self._check.forget()
        self._tag = self._draw_tag()
        self._counter = 0
        try:
            await self._beat(is_first=True)
        except (RedisError, RedisClusterException, OSError, Unavailable):
            return
        if not self._is_up:
            self._is_up = True
            _log.info("room redis reachable; rooms are served")

    def _lost(self, reason: str = "subscription") -> None:
        """The room Redis failed: every room this node serves ends for its members here."""
        if not self._is_up:
            return
        self._is_up = False
        _log.warning(
            "room redis lost; the rooms of this node's members ended", extra={"reason": reason}
        )
        self._cache.clear()
        self._locks.clear()
        if self._check is not None:
            self._check.forget()
        for room_key in self.bus.rooms():
            self.bus.end_locally(room_key, _ENDED, CLOSE_UNKNOWN)
        closing = asyncio.ensure_future(self.bus.close())
        closing.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def _redis(self, call: Awaitable[_T]) -> _T:
        """`call`, with a Redis failure turned into Unavailable (and the outage handled).
        At most `_CONCURRENT_CALLS` at once: a burst of joins would otherwise open a Redis
        connection each, and a connect that waits its turn past the timeout reads as an
        outage."""
        try:
            async with self._calls:
                return await call
        except (RedisError, RedisClusterException, OSError, ConnectionError) as exc:
            self._lost(type(exc).__name__)
            raise Unavailable(ROOM_STATE.unavailable_message) from exc

    def _draw_tag(self) -> int:
        return int.from_bytes(self._random_bytes(4), "big") >> (32 - _TAG_BITS) or 1


class _Missed(Exception):
    """This node's heartbeat is missing from the room Redis, or was too old."""


@dataclasses.dataclass(slots=True)
class _Cached:
    version: bytes
    data: bytes
    room: RelayRoom | None = None


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def check_room_redis(url: str, *, clock: Clock) -> PersistenceCheck:
    """The room Redis's "must not persist" check, asked at once (InvalidInput, one sentence,
    when it persists or will not say)."""
    return check_at_start(url, is_default=False, use=ROOM_STATE, clock=clock)
