"""The secret requests of the Redis adapter (`storage/request_port.py`).

A request is one hash, `atopos:{<tag>}:request` (the tag a digest of the request id, as for
secrets: what Redis shows cannot be turned back into a request link), with a native TTL. A
claim, a release, a completion and a cancel are each one Lua script on that one key, so a claim is
atomic on one Redis and on a Cluster alike. docs/storage-redis.md has the layout.

Each operation implements the rows of its event in `protocol/request_lifecycle.py`
(EXPIRE is the `expires_at > now` test of every read and claim).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from atopos.crypto.base64url import b64url_encode
from atopos.storage.redis_scripts import LuaScript
from atopos.storage.request_port import (
    CLAIM_LEASE_SECONDS,
    NewRequest,
    RequestInfo,
    RequestTaken,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from typing import TypeVar

    from atopos.storage.redis_scripts import RedisClient

    T = TypeVar("T")

__all__ = [
    "CANCEL_REQUEST",
    "CLAIM_REQUEST",
    "COMPLETE_REQUEST",
    "RELEASE_REQUEST",
    "RedisRequests",
    "request_key",
]

_FIELDS = (
    b"token_hash",
    b"fill_hash",
    b"device_key",
    b"access_key",
    b"created_at",
    b"expires_at",
    b"secret_lifetime",
    b"secret_id",
    b"is_filled",
    b"claimed_until",
)

# The test claims and cancels share: answer 0 (nothing written) unless the request is open,
# or its claim lapsed unfilled. KEYS: the request. ARGV[1]: now.
_RETURN_UNLESS_FREE = """
local f = redis.call('HMGET', KEYS[1], 'expires_at', 'secret_id', 'is_filled', 'claimed_until')
local now = tonumber(ARGV[1])
if f[1] == false or tonumber(f[1]) <= now then
  return 0
end
if f[2] ~= false and (f[3] ~= false or tonumber(f[4] or '0') > now) then
  return 0
end
"""

# Take an open request, or one whose claim lapsed unfilled. KEYS: the request.
# ARGV: now, secret id, lease end. Answers 1 (claimed) or 0 (unknown, expired, filled or
# claimed under a live lease: nothing written).
CLAIM_REQUEST = LuaScript(
    _RETURN_UNLESS_FREE
    + """
redis.call('HSET', KEYS[1], 'secret_id', ARGV[2], 'claimed_until', ARGV[3])
return 1
""",
)

# Forget a request no fill holds: the claim's own test, then UNLINK. KEYS: the request.
# ARGV: now. Answers 1 (forgotten) or 0 (unknown, expired, filled or claimed under a live
# lease: nothing written).
CANCEL_REQUEST = LuaScript(
    _RETURN_UNLESS_FREE
    + """
redis.call('UNLINK', KEYS[1])
return 1
""",
)

# Open a request again after its upload failed. KEYS: the request. ARGV: secret id.
RELEASE_REQUEST = LuaScript(
    """
if redis.call('HGET', KEYS[1], 'secret_id') == ARGV[1]
   and redis.call('HEXISTS', KEYS[1], 'is_filled') == 0 then
  redis.call('HDEL', KEYS[1], 'secret_id')
  return 1
end
return 0
""",
)

# Mark a request filled and keep it until the secret expires.
# KEYS: the request. ARGV: secret id, new expires_at, its ttl (seconds), now.
# Answers 0 (nothing written) when the request expired or no longer holds this claim.
COMPLETE_REQUEST = LuaScript(
    """
local f = redis.call('HMGET', KEYS[1], 'secret_id', 'expires_at')
if f[1] ~= ARGV[1] or tonumber(f[2]) <= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], 'is_filled', 1)
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
""",
)


def request_key(request_id: bytes) -> bytes:
    """The name of a request's hash."""
    tag = b64url_encode(hashlib.sha256(b"atopos/redis-request-tag\x00" + request_id).digest()[:16])
    return b"atopos:{" + tag.encode("ascii") + b"}:request"


class RedisRequests:
    """`RequestStore` for `RedisSecretStore`, which provides `_run`, `_script` and
    `_client`."""

    if TYPE_CHECKING:
        _client: RedisClient

        async def _run(self, call: Awaitable[T]) -> T: ...

        async def _script(
            self, script: LuaScript, keys: Sequence[bytes], args: Sequence[bytes | int]
        ) -> Any: ...

    async def create_request(self, request: NewRequest) -> None:
        key = request_key(request.request_id)
        mapping: dict[bytes, bytes | int] = {
            b"token_hash": request.token_hash,
            b"fill_hash": request.fill_token_hash,
            b"device_key": request.device_key,
            b"access_key": request.access_key,
            b"created_at": request.created_at,
            b"expires_at": request.expires_at,
            b"secret_lifetime": request.secret_lifetime,
        }
        ttl = max(1, request.expires_at - request.created_at)
        # One MULTI: the hash never exists without its TTL.
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(key, ttl)
        await self._run(pipe.execute())

    async def request_info(self, request_id: bytes, now: int) -> RequestInfo | None:
        values: list[Any] = await self._run(self._client.hmget(request_key(request_id), _FIELDS))
        token_hash, fill_hash, device_key, access_key, created, expires, lifetime = values[:7]
        secret_id, is_filled, claimed_until = values[7:]
        if token_hash is None or int(expires) <= now:
            return None
        return RequestInfo(
            request_id=request_id,
            token_hash=token_hash,
            fill_token_hash=fill_hash,
            device_key=device_key,
            access_key=access_key,
            created_at=int(created),
            expires_at=int(expires),
            secret_lifetime=int(lifetime),
            secret_id=secret_id,
            is_filled=is_filled is not None,
            claimed_until=int(claimed_until or 0),
        )

    async def claim_request(self, request_id: bytes, secret_id: bytes, now: int) -> RequestInfo:
        claimed = await self._script(
            CLAIM_REQUEST,
            [request_key(request_id)],
            [now, secret_id, now + CLAIM_LEASE_SECONDS],
        )
        if claimed != 1:
            raise RequestTaken()
        info = await self.request_info(request_id, now)
        if info is None:  # expired between the two calls
            raise RequestTaken()
        return info

    async def release_request(self, request_id: bytes, secret_id: bytes) -> None:
        await self._script(RELEASE_REQUEST, [request_key(request_id)], [secret_id])

    async def cancel_request(self, request_id: bytes, now: int) -> bool:
        cancelled = await self._script(CANCEL_REQUEST, [request_key(request_id)], [now])
        return bool(cancelled == 1)

    async def complete_request(
        self, request_id: bytes, secret_id: bytes, expires_at: int, now: int
    ) -> bool:
        ttl = max(1, expires_at - now)
        completed = await self._script(
            COMPLETE_REQUEST, [request_key(request_id)], [secret_id, expires_at, ttl, now]
        )
        return bool(completed == 1)
