"""Redis adapter of the storage port: the shared store of several stateless nodes.

URLs: `redis://[user:password@]host:port[/db]` and `rediss://…` (TLS) for one Redis;
`redis+cluster://[user:password@]host:port[,host:port…]` (or `rediss+cluster://`) for a
Redis Cluster, given one or more of its nodes.

Every key of one secret shares the hash tag `{<tag>}` (tag = a digest of the secret id),
so the Lua scripts of `storage/redis_scripts.py` can read and write them atomically on one
Cluster node. Keys carry native TTLs: a secret's keys expire with it, a used ticket's marker
with the ticket, the chunks of an unfinished upload after a short lease. Durability is the
Redis server's: with `appendonly yes` and `appendfsync always` Redis fsyncs its AOF before it
answers, and this adapter answers only after Redis did. docs/storage-redis.md has the design.

Each operation implements rows of the lifecycle table in `atopos.protocol.secret_lifecycle`
(cited per method and per script). EXPIRE is the `expires_at <= now` test of every read and
of CONSUME; SWEEP is Redis's own key expiry (the native TTLs), so `sweep` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from atopos.clock import Clock, SystemClock
from atopos.crypto.base64url import b64url_encode
from atopos.errors import Gone, InvalidInput, StorageFull, Unavailable
from atopos.storage.chunks import CHUNK_BYTES, fixed_chunks, once, read_head
from atopos.storage.outage_log import OutageLog
from atopos.storage.port import (
    FULL_MESSAGE,
    GONE_MESSAGE,
    UNAVAILABLE_MESSAGE,
    NewSecret,
    Receipts,
    Revealed,
    SecretInfo,
    TicketUsed,
    spent_minute,
)
from atopos.storage.redis_clients import async_client
from atopos.storage.redis_requests import RedisRequests
from atopos.storage.redis_scripts import (
    CONSUME,
    DELETE,
    PUBLISH,
    PUT_CHUNK,
    RECEIPTS,
    RELEASE,
    LuaScript,
    RedisClient,
)
from atopos.storage.urls import REDIS_CLUSTER_SCHEMES, REDIS_SCHEMES

__all__ = [
    "CHUNK_BYTES",
    "KEY_PREFIX",
    "STREAM_GRACE",
    "UPLOAD_LEASE",
    "RedisSecretStore",
    "SecretKeys",
]

KEY_PREFIX = b"atopos:"
# How long the chunks of a burned secret may outlive the burn for a reader still streaming
# them (and how long they stay when that reader's node dies mid-stream).
STREAM_GRACE = 15 * 60
# How long the chunks of an unpublished upload live after the last chunk arrived.
UPLOAD_LEASE = 10 * 60
# Redis calls in flight per node process; more wait their turn. The clients' pools (100
# connections, per Cluster node) then never run out, which they report as an error.
MAX_IN_FLIGHT = 64
_INFO_FIELDS = (
    b"manage_hash",
    b"kind",
    b"size",
    b"views_left",
    b"created_at",
    b"expires_at",
    b"device_key",
    b"has_passphrase",
    b"access_key",
    b"kdf_fields",
)
_log = logging.getLogger("atopos.storage")
T = TypeVar("T")


class SecretKeys:
    """The names of one secret's keys. The tag is a digest of the id, not the id: what
    Redis (and its AOF) shows an operator cannot be turned back into a share link."""

    __slots__ = ("meta", "prefix", "readers", "receipts")

    def __init__(self, secret_id: bytes) -> None:
        tag = b64url_encode(hashlib.sha256(b"atopos/redis-tag\x00" + secret_id).digest()[:16])
        self.prefix = KEY_PREFIX + b"{" + tag.encode("ascii") + b"}:"
        self.meta = self.prefix + b"meta"
        self.readers = self.prefix + b"readers"
        # Same hash tag (one Cluster slot, so the scripts stay atomic), outside the secret's
        # own prefix: the receipts are not the secret, and outlive its burn.
        self.receipts = KEY_PREFIX + b"receipts:{" + tag.encode("ascii") + b"}"

    def chunk(self, seq: int) -> bytes:
        return self.prefix + b"chunk:%d" % seq

    def chunks(self, count: int) -> list[bytes]:
        return [self.chunk(seq) for seq in range(count)]

    def ticket(self, ticket_id: bytes) -> bytes:
        return self.prefix + b"ticket:" + b64url_encode(ticket_id).encode("ascii")


class RedisSecretStore(RedisRequests):
    """`SecretStore` on Redis or Redis Cluster (see the module docstring)."""

    def __init__(self, client: RedisClient, clock: Clock | None = None) -> None:
        self._client = client
        self._clock = clock or SystemClock()
        self._outages = OutageLog(_log, "redis")
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> RedisSecretStore:
        if url.startswith(REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES):
            try:
                return cls(async_client(url, client_name="atopos"), clock)
            except (ValueError, TypeError, RedisClusterException):
                pass
        raise InvalidInput(
            "A Redis storage URL looks like redis://host:port/0 or redis+cluster://host:port."
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, now: int) -> None:
        del now  # Redis expires keys itself; there is nothing left behind to sweep.
        # A node may start before Redis: it then answers 503 until Redis is reachable.
        await self._warn_if_not_durable()

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await self._client.aclose()

    async def check(self) -> None:
        await self._run(self._client.ping())

    async def used_bytes(self) -> int:
        """Redis's own used_memory (summed over the nodes of a Cluster)."""
        info: Any = await self._run(self._client.info("memory"))
        if "used_memory" in info:
            return int(info["used_memory"])
        return sum(int(node.get("used_memory", 0)) for node in info.values())

    async def _warn_if_not_durable(self) -> None:
        """Say so in the log when Redis would lose or evict acknowledged secrets."""
        try:
            async with self._in_flight:
                config: Any = await self._client.config_get("*")
        except (RedisError, RedisClusterException, OSError):
            # Unreachable (the first request will say so) or CONFIG is renamed or denied,
            # as on managed Redis services: then we cannot tell.
            return
        # A Redis Cluster client asks one node; the others are configured alike (deploy/).
        values = {_text(k): _text(v) for k, v in dict(config).items()}
        if values.get("appendonly") != "yes" or values.get("appendfsync") != "always":
            _log.warning(
                "redis is not set to appendonly yes + appendfsync always; "
                "an acknowledged secret may not survive a Redis crash"
            )
        if values.get("maxmemory-policy", "noeviction") != "noeviction":
            _log.warning(
                "redis maxmemory-policy is not noeviction; Redis may drop secrets "
                "before they expire"
            )

    # -- the port ---------------------------------------------------------------------------

    # Lifecycle table: GONE --CREATE--> LIVE (STORED), published by PUBLISH.
    async def create(self, secret: NewSecret, body: AsyncIterator[bytes]) -> int:
        started = self._clock.monotonic()
        keys = SecretKeys(secret.secret_id)
        head, is_chunked = await read_head(body)
        if is_chunked:
            return await self._create_chunked(secret, keys, fixed_chunks(head, body), started)
        inline = bytes(head)
        await self._publish(secret, keys, [], len(inline), inline, started)
        return len(inline)

    async def _create_chunked(
        self, secret: NewSecret, keys: SecretKeys, chunks: AsyncIterator[bytes], started: float
    ) -> int:
        written: list[bytes] = []
        size = 0
        try:
            async for chunk in chunks:
                size += await self._put_chunk(keys, written, chunk)
            await self._publish(secret, keys, written, size, None, started)
            return size
        except BaseException:
            await asyncio.shield(self._discard(written))
            raise

    async def _put_chunk(self, keys: SecretKeys, written: list[bytes], data: bytes) -> int:
        key = keys.chunk(len(written))
        earlier = list(written)
        written.append(key)  # before the call: a chunk that did land must be discarded too
        await self._script(PUT_CHUNK, [key, *earlier], [data, UPLOAD_LEASE])
        return len(data)

    async def _discard(self, chunk_keys: list[bytes]) -> None:
        # Best effort: the upload lease removes what this cannot.
        if chunk_keys:
            with contextlib.suppress(Unavailable, StorageFull):
                await self._run(self._client.unlink(*chunk_keys))

    async def _publish(
        self,
        secret: NewSecret,
        keys: SecretKeys,
        chunk_keys: list[bytes],
        size: int,
        inline: bytes | None,
        started: float,
    ) -> None:
        # Relative TTL on the caller's clock: the time the upload took is already spent.
        lifetime = secret.expires_at - secret.created_at - int(self._clock.monotonic() - started)
        fields: list[bytes | int] = [
            b"manage_hash",
            secret.manage_token_hash,
            b"kind",
            secret.kind.encode("ascii"),
            b"size",
            size,
            b"views_left",
            secret.views,
            b"created_at",
            secret.created_at,
            b"expires_at",
            secret.expires_at,
            b"chunks",
            len(chunk_keys),
        ]
        if inline is not None:
            fields += [b"body", inline]
        if secret.device_key is not None:
            fields += [b"device_key", secret.device_key]
        if secret.has_passphrase:
            fields += [b"has_passphrase", 1]
        if secret.access_key is not None:
            fields += [b"access_key", secret.access_key]
        if secret.kdf_fields is not None:
            fields += [b"kdf_fields", secret.kdf_fields]
        published = await self._script(
            PUBLISH,
            [keys.meta, keys.receipts, *chunk_keys],
            [max(1, lifetime), secret.manage_token_hash, secret.expires_at, *fields],
        )
        if published != 1:
            # A chunk outlived its upload lease (or Redis lost it): store nothing.
            raise Unavailable(UNAVAILABLE_MESSAGE)

    async def info(self, secret_id: bytes, now: int) -> SecretInfo | None:
        # Lifecycle table: READ: LIVE answers INFO; EXPIRED and GONE answer GONE (None).
        values: list[Any] = await self._run(
            self._client.hmget(SecretKeys(secret_id).meta, _INFO_FIELDS)
        )
        manage_hash, kind, size, views_left, created_at, expires_at, device_key = values[:7]
        locked, access_key, kdf_fields = values[7:]
        if manage_hash is None or int(expires_at) <= now:
            return None
        return SecretInfo(
            secret_id=secret_id,
            manage_token_hash=manage_hash,
            kind=kind.decode("ascii"),
            size=int(size),
            views_left=int(views_left),
            created_at=int(created_at),
            expires_at=int(expires_at),
            device_key=device_key,
            has_passphrase=locked is not None,
            access_key=access_key,
            kdf_fields=kdf_fields,
        )

    async def consume(
        self, secret_id: bytes, ticket_id: bytes, ticket_expires_at: int, now: int
    ) -> Revealed:
        # Lifecycle table: CONSUME, one CONSUME script run (see there).
        keys = SecretKeys(secret_id)
        base = [keys.meta, keys.ticket(ticket_id), keys.readers, keys.receipts]
        args = [now, max(1, ticket_expires_at - now), STREAM_GRACE, spent_minute(now)]
        chunk_keys: list[bytes] = []
        answer = await self._script(CONSUME, base, args)
        if answer[0] == b"chunks":
            # A file secret: ask again, naming its chunks (they are keys the script touches).
            chunk_keys = keys.chunks(int(answer[1]))
            answer = await self._script(CONSUME, base + chunk_keys, args)
        outcome = answer[0]
        if outcome == b"used":
            raise TicketUsed()
        if outcome == b"gone":
            raise Gone(GONE_MESSAGE)
        if outcome != b"ok" or int(answer[3]) != len(chunk_keys):
            _log.error("redis consume answered unexpectedly")
            raise Unavailable(UNAVAILABLE_MESSAGE)
        size = int(answer[1])
        if not chunk_keys:
            return Revealed(size, once(answer[2]))
        return Revealed(size, self._stream(keys, chunk_keys))

    async def _stream(self, keys: SecretKeys, chunk_keys: list[bytes]) -> AsyncIterator[bytes]:
        try:
            for key in chunk_keys:
                data: Any = await self._run(self._client.get(key))
                if data is None:
                    # Past the stream grace: the burned chunks are gone. The reader gets a
                    # truncated envelope, which fails closed.
                    _log.warning("a streamed secret lost its chunks mid-stream")
                    raise Unavailable(UNAVAILABLE_MESSAGE)
                yield data
        finally:
            with contextlib.suppress(Unavailable, StorageFull):
                await asyncio.shield(
                    self._script(RELEASE, [keys.meta, keys.readers, *chunk_keys], [])
                )

    async def receipts(self, secret_id: bytes, now: int) -> Receipts | None:
        # The RECEIPTS script also answers for a secret published before receipts existed.
        keys = SecretKeys(secret_id)
        values: list[Any] = await self._script(RECEIPTS, [keys.receipts, keys.meta], [])
        manage_hash, expires_at, viewed_at = values
        if manage_hash is None or expires_at is None or int(expires_at) <= now:
            return None
        minutes = tuple(int(text) for text in (viewed_at or b"").split(b",") if text)
        return Receipts(manage_hash, int(expires_at), minutes)

    async def delete(self, secret_id: bytes) -> bool:
        # Lifecycle table: DELETE: LIVE and EXPIRED -> GONE (True); GONE -> False.
        keys = SecretKeys(secret_id)
        base = [keys.meta, keys.readers, keys.receipts]
        answer = await self._script(DELETE, base, [STREAM_GRACE])
        if answer[0] == b"chunks":
            answer = await self._script(DELETE, base + keys.chunks(int(answer[1])), [STREAM_GRACE])
        return bool(answer[0] == b"ok")

    async def sweep(self, now: int) -> int:
        """Nothing to do: Redis expires every key itself (native TTL), which is the
        lifecycle table's SWEEP (EXPIRED -> GONE) for this adapter."""
        del now
        return 0

    async def sweep_floor(self) -> int:
        """None kept: Redis forgets ticket ids by their keys' TTL, on its own clock (a limit
        docs/threat-model.md describes)."""
        return 0

    # -- calling Redis ----------------------------------------------------------------------

    async def _script(
        self, script: LuaScript, keys: Sequence[bytes], args: Sequence[bytes | int]
    ) -> Any:
        return await self._run(script(self._client, keys, args))

    async def _run(self, call: Awaitable[T]) -> T:
        """Await one Redis call; every Redis failure becomes Unavailable (a 503), logged as
        one line when Redis goes away and one when it is back, never with keys or values."""
        try:
            async with self._in_flight:
                result = await call
        except OutOfMemoryError:
            _log.error("redis is out of memory (maxmemory); refusing writes")
            raise StorageFull(FULL_MESSAGE) from None
        except (ClusterDownError, ReadOnlyError, TryAgainError) as exc:
            # Answers, but of a Redis that cannot serve right now (failover, resharding).
            raise self._down(exc) from None
        except ResponseError as exc:
            # A script or command error is a bug or a misconfiguration, not a client error.
            _log.error("redis refused a command", extra={"error": type(exc).__name__})
            raise Unavailable(UNAVAILABLE_MESSAGE) from None
        except (RedisError, RedisClusterException, OSError) as exc:
            raise self._down(exc) from None
        self._outages.up()
        return result

    def _down(self, exc: Exception) -> Unavailable:
        self._outages.down(exc)
        return Unavailable(UNAVAILABLE_MESSAGE)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
