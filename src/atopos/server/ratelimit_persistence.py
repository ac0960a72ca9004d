"""Keeping rate-limit counters off disk: does the Redis that holds them persist anything?

The counters are keyed by HMAC identifiers of clients (server/identity.py), which the design
promises never reach a disk. A Redis with an AOF (`appendonly yes`) or RDB snapshots (`save`
points) would write them there, so a node refuses to start on one (`check_at_start`) unless
the operator opted out (ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK=1). A Redis that cannot be
reached at start does not stop the node: `PersistenceCheck` asks again before the first
counter is written, and again after every outage of that Redis.

`judge` decides from the answers to `CONFIG GET appendonly` and `CONFIG GET save` alone;
`read_persistence_settings` is the only code here that talks to Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from atopos.errors import InvalidInput, Unavailable
from atopos.storage.urls import REDIS_CLUSTER_SCHEMES, ClusterUrl

__all__ = [
    "OPT_OUT_VARIABLE",
    "UNAVAILABLE_MESSAGE",
    "Finding",
    "Persistence",
    "PersistenceCheck",
    "Settings",
    "check_at_start",
    "judge",
    "read_persistence_settings",
    "refusal",
]

OPT_OUT_VARIABLE = "ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK"
# The answers of one Redis node: CONFIG GET's name → value, as text.
Settings = Mapping[str, str]
# None stands for a Redis that refused CONFIG (renamed, or denied by an ACL).
ReadSettings = Callable[[str], Sequence[Settings] | None]

_CONNECT_TIMEOUT = 2.0
_SOCKET_TIMEOUT = 5.0
UNAVAILABLE_MESSAGE = "The server's rate-limit storage is unavailable; try again shortly."
_FIX = (
    "point ATOPOS_RATE_LIMIT_STORAGE at a Redis without persistence "
    "(deploy/redis/atopos-ephemeral.conf) or set it to memory:// for per-node limits"
)
_DEFAULT_SUBJECT = (
    "The storage's Redis, where rate-limit counters go when ATOPOS_RATE_LIMIT_STORAGE is unset,"
)
_EXPLICIT_SUBJECT = "The Redis of ATOPOS_RATE_LIMIT_STORAGE"
_log = logging.getLogger("atopos.server")


class Persistence(enum.Enum):
    NONE = "none"  # nothing the Redis holds is written to disk
    ON_DISK = "on disk"  # an AOF or RDB snapshots
    UNKNOWN = "unknown"  # CONFIG refused, or an answer without the setting


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    persistence: Persistence
    # Why, for the operator: `appendonly yes`, `save "3600 1"`, `CONFIG refused`.
    reason: str = ""


def judge(answers: Sequence[Settings] | None) -> Finding:
    """Whether Redis writes what it holds to disk, from each node's `appendonly` and `save`
    (every node of a Cluster: one that persists is enough to put counters on disk)."""
    if answers is None:
        return Finding(Persistence.UNKNOWN, "CONFIG refused")
    if not answers:
        return Finding(Persistence.UNKNOWN, "no node answered")
    for settings in answers:
        appendonly, save = settings.get("appendonly"), settings.get("save")
        if appendonly is None or save is None:
            return Finding(Persistence.UNKNOWN, "CONFIG GET without appendonly or save")
        if appendonly.strip().lower() != "no":
            return Finding(Persistence.ON_DISK, f"appendonly {appendonly}")
        if save.strip():
            return Finding(Persistence.ON_DISK, f'save "{save.strip()}"')
    return Finding(Persistence.NONE)


def refusal(finding: Finding, *, is_default: bool) -> str | None:
    """The one sentence a node refuses to start with, or None when the Redis persists
    nothing. `is_default`: the counters would go to the storage's Redis because
    ATOPOS_RATE_LIMIT_STORAGE is unset."""
    if finding.persistence is Persistence.NONE:
        return None
    subject = _DEFAULT_SUBJECT if is_default else _EXPLICIT_SUBJECT
    if finding.persistence is Persistence.ON_DISK:
        return (
            f"{subject} writes to disk ({finding.reason}), and the counters' client "
            f"identifiers must never reach a disk; {_FIX}."
        )
    return (
        f"{subject} does not answer CONFIG GET appendonly and save (renamed or denied), so it "
        f"cannot be checked that rate-limit counters stay off disk; {_FIX}, or set "
        f"{OPT_OUT_VARIABLE}=1 if you know that it persists nothing."
    )


def check_at_start(
    url: str, *, is_default: bool, read: ReadSettings | None = None
) -> PersistenceCheck:
    """Ask the rate-limit Redis at once; raise InvalidInput (one sentence) when it persists
    or will not say. When it cannot be reached, the node starts anyway (and answers 503
    until it can) and the returned check asks again before the first counter is written."""
    read = read or read_persistence_settings
    try:
        answers = read(url)
    except Unavailable:
        _log.warning("rate-limit storage unreachable at start; its persistence is checked later")
        return PersistenceCheck(url, is_default=is_default, read=read)
    sentence = refusal(judge(answers), is_default=is_default)
    if sentence is not None:
        raise InvalidInput(sentence)
    return PersistenceCheck(url, is_default=is_default, read=read, is_verified=True)


class PersistenceCheck:
    """Before a counter is written: has the rate-limit Redis been seen to persist nothing
    since it last failed? If not, ask it (one question at a time, shared by the requests
    waiting for it). A Redis that persists makes every limited request fail closed (503),
    with one error line in the log, until the node is restarted."""

    def __init__(
        self,
        url: str,
        *,
        is_default: bool,
        read: ReadSettings | None = None,
        is_verified: bool = False,
    ) -> None:
        self._url = url
        self._is_default = is_default
        self._read = read or read_persistence_settings
        self._is_verified = is_verified
        self._is_refused = False
        self._asking: asyncio.Future[Sequence[Settings] | None] | None = None

    @property
    def is_verified(self) -> bool:
        return self._is_verified

    @property
    def is_refused(self) -> bool:
        return self._is_refused

    async def ensure(self) -> None:
        """Return when counters may be written; raise Unavailable when they may not."""
        if self._is_verified:
            return
        if self._is_refused:
            raise Unavailable(UNAVAILABLE_MESSAGE)
        if self._asking is None:
            # A thread: the question is a few blocking round trips on a fresh connection,
            # asked once after start or after an outage, not once per request.
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._read, self._url))
            self._asking.add_done_callback(self._asked)
        # Shielded: a request that goes away does not cancel the question for the others.
        answers = await asyncio.shield(self._asking)
        if self._is_verified:
            return
        finding = judge(answers)
        if refusal(finding, is_default=self._is_default) is None:
            self._is_verified = True
            return
        if not self._is_refused:
            self._is_refused = True
            # The log redacts long tokens, so the setting's name is left to the docs.
            _log.error(
                "rate-limit redis may write counters to disk; limited routes answer 503 "
                "until it persists nothing and the node is restarted (docs/operations.md)",
                extra={"reason": finding.reason},
            )
        raise Unavailable(UNAVAILABLE_MESSAGE)

    def forget(self) -> None:
        """The Redis failed: it may come back as another one, so ask again next time."""
        self._is_verified = False

    def _asked(self, asking: asyncio.Future[Sequence[Settings] | None]) -> None:
        if self._asking is asking:
            self._asking = None
        if not asking.cancelled():
            asking.exception()  # retrieved here, so an unawaited failure logs nothing


def read_persistence_settings(url: str) -> list[dict[str, str]] | None:
    """`appendonly` and `save` of the Redis at `url`, or of every node of a Cluster (the
    replicas too: they receive the counters as well). None when CONFIG is refused; raises
    Unavailable when Redis cannot be reached."""
    # Imported here: a node that keeps its counters in memory never loads the Redis client.
    import redis
    from redis.exceptions import RedisClusterException, RedisError, ResponseError

    try:
        if url.startswith(REDIS_CLUSTER_SCHEMES):
            with _cluster_client(url) as cluster:
                return [_settings_of(node.redis_connection) for node in cluster.get_nodes()]
        with redis.Redis.from_url(url, **_client_options()) as client:
            return [_settings_of(client)]
    except ResponseError:
        # "unknown command" (renamed) or NOPERM (an ACL): Redis understood and said no.
        return None
    except (RedisError, RedisClusterException, OSError) as exc:
        # The cause is kept for the caller's log line (its class name only).
        raise Unavailable(UNAVAILABLE_MESSAGE) from exc


def _client_options() -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _CONNECT_TIMEOUT,
        # Not retried: an unreachable Redis is asked again later, not waited for now.
        "retry": Retry(NoBackoff(), 0),
        "client_name": "atopos-limits-check",
    }


def _cluster_client(url: str) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    cluster = ClusterUrl.parse(url)
    return RedisCluster(
        startup_nodes=[
            ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in cluster.nodes
        ],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.tls,
        **_client_options(),
    )


def _settings_of(client: Any) -> dict[str, str]:
    settings: dict[str, str] = {}
    # One name per CONFIG GET: Redis 6 takes a single pattern.
    for name in ("appendonly", "save"):
        answer = dict(client.config_get(name))
        settings.update({_text(key): _text(value) for key, value in answer.items()})
    return settings


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
