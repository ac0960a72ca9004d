"""The Lua scripts of the Redis adapter, and how they are run (EVALSHA, loading on NOSCRIPT).

Each script touches the keys of one secret only, all of which share the hash tag
`{<secret tag>}` (see `storage/redis.py`), so it runs atomically on one Redis Cluster
node. Every key a script touches is passed in KEYS: the caller learns the number of body
chunks from a first, read-only answer (`chunks`, n) and calls again with their names.

Redis does not roll a script back when it fails halfway, so every script makes all its
checks before its first write. The layout of keys and fields is in docs/storage-redis.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

__all__ = [
    "CONSUME",
    "DELETE",
    "PUBLISH",
    "PUT_CHUNK",
    "RECEIPTS",
    "RELEASE",
    "LuaScript",
    "RedisClient",
]

RedisClient = Redis | RedisCluster


class LuaScript:
    """A script run by its SHA1 (EVALSHA), loaded first when the server does not know it
    (after a restart, a failover, or on a node that never saw it)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: RedisClient, keys: Sequence[bytes], args: Sequence[bytes | int]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


# Upload. KEYS: the new chunk, then every chunk written before it.
# ARGV: chunk bytes, lease (seconds).
# Unpublished chunks live for `lease` seconds after the last chunk arrived, so the chunks
# of an upload whose node died vanish on their own; a live upload keeps them all alive.
PUT_CHUNK = LuaScript(
    """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = 2, #KEYS do
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 1
""",
)

# Lifecycle (protocol/secret_lifecycle.py): GONE --CREATE--> LIVE.
# Publish a secret: the meta hash (with the body inline when there are no chunks) and its
# receipts hash (manage_hash, expires_at, viewed_at = ''), both with the secret's TTL.
# KEYS: meta, receipts, then every chunk. ARGV: ttl (seconds), manage hash, expires_at,
# then field, value, field, value... of the meta hash.
# Returns 1, or 0 (nothing written) when a chunk is missing: the upload outlived its lease.
PUBLISH = LuaScript(
    """
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return 0
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[2], 'manage_hash', ARGV[2], 'expires_at', ARGV[3], 'viewed_at', '')
for i = 1, #KEYS do
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
""",
)

# Lifecycle (protocol/secret_lifecycle.py): CONSUME. A redeemed ticket id -> TICKET_USED
# ('used') in any state; LIVE with views_left == 1 -> GONE (UNLINK, no marker), LIVE
# otherwise -> LIVE (one view less, the marker set); EXPIRED or GONE -> 'gone'.
# Take one view and append its minute to the receipts' viewed_at (comma-separated), which
# outlive the burn until their own TTL. KEYS: meta, used-ticket marker, readers counter,
# receipts, then every chunk. ARGV: now, ticket ttl (seconds), stream grace (seconds), minute.
# A secret published before receipts existed has no receipts hash: its first view since
# creates it from the meta (manage_hash, expires_at) with the meta's TTL, so its receipts
# start with that view (views spent before the upgrade were never recorded).
# Answers: {'used'} | {'gone'} | {'chunks', n} (call again with the n chunk names)
#        | {'ok', size, inline body or '', chunk count}
# The ticket check comes first, so a replayed ticket is refused as replayed even after the
# secret was burned, except the one that burned it: the last view records no marker, as
# nothing is left for it to buy. A call that answers 'gone' or 'chunks' has written nothing.
CONSUME = LuaScript(
    """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'used'}
end
local f = redis.call(
  'HMGET', KEYS[1], 'views_left', 'expires_at', 'size', 'chunks', 'body', 'manage_hash')
local views_left = tonumber(f[1])
if views_left == nil or views_left <= 0 or tonumber(f[2]) <= tonumber(ARGV[1]) then
  return {'gone'}
end
local chunks = tonumber(f[4])
if #KEYS ~= 4 + chunks then
  return {'chunks', chunks}
end
local viewed = redis.call('HGET', KEYS[4], 'viewed_at')
if viewed then
  if viewed ~= '' then
    viewed = viewed .. ','
  end
  redis.call('HSET', KEYS[4], 'viewed_at', viewed .. ARGV[4])
else
  redis.call('HSET', KEYS[4], 'manage_hash', f[6], 'expires_at', f[2], 'viewed_at', ARGV[4])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[4], ttl)
  else
    redis.call('EXPIRE', KEYS[4], math.max(1, tonumber(f[2]) - tonumber(ARGV[1])))
  end
end
views_left = views_left - 1
if views_left == 0 then
  redis.call('UNLINK', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'views_left', views_left)
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
end
if chunks == 0 then
  return {'ok', f[3], f[5] or '', 0}
end
-- A streamed view: count this reader, so the chunks outlive a burn until the last
-- reader released them (RELEASE), and cap how long they may outlive it.
local grace = tonumber(ARGV[3])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], grace)
for i = 5, #KEYS do
  if views_left == 0 or redis.call('TTL', KEYS[i]) < grace then
    redis.call('EXPIRE', KEYS[i], grace)
  end
end
return {'ok', f[3], '', chunks}
""",
)

# Read a secret's receipts: the receipts hash, or, for a live secret published before
# receipts existed (no receipts hash yet), its meta with no view recorded. One script, so a
# view that burns such a secret between the two reads cannot make it look deleted.
# KEYS: receipts, meta. Answers {manage_hash, expires_at, viewed_at}, all nil when neither
# key exists.
RECEIPTS = LuaScript(
    """
local receipts = redis.call('HMGET', KEYS[1], 'manage_hash', 'expires_at', 'viewed_at')
if receipts[1] then
  return receipts
end
local meta = redis.call('HMGET', KEYS[2], 'manage_hash', 'expires_at')
if meta[1] then
  return {meta[1], meta[2], ''}
end
return {false, false, false}
""",
)

# A streamed view ended (or its reader went away). KEYS: meta, readers, then every chunk.
# The last reader of a burned (or expired, or deleted) secret removes its chunks.
RELEASE = LuaScript(
    """
local left = redis.call('DECR', KEYS[2])
if left > 0 then
  return left
end
redis.call('UNLINK', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 3, #KEYS do
    redis.call('UNLINK', KEYS[i])
  end
end
return 0
""",
)

# Lifecycle (protocol/secret_lifecycle.py): DELETE, LIVE or EXPIRED -> GONE; GONE -> 'gone'.
# Burn a secret now (manage token), and its receipts. KEYS: meta, readers, receipts, then
# every chunk.
# ARGV: stream grace (seconds). Answers {'gone'} | {'chunks', n} | {'ok'}.
# Chunks that a reader is still streaming are left to that reader's RELEASE (and to the
# grace TTL, should its node die).
DELETE = LuaScript(
    """
local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks'))
if chunks == nil then
  return {'gone'}
end
if #KEYS ~= 3 + chunks then
  return {'chunks', chunks}
end
redis.call('UNLINK', KEYS[1], KEYS[3])
local streaming = tonumber(redis.call('GET', KEYS[2]) or '0') > 0
for i = 4, #KEYS do
  if streaming then
    redis.call('EXPIRE', KEYS[i], ARGV[1])
  else
    redis.call('UNLINK', KEYS[i])
  end
end
return {'ok'}
""",
)
