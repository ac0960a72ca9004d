"""Keeping ephemeral data off disk: does the Redis that holds it persist anything?

Some Redis data must never reach a disk: the rate-limit counters are keyed by HMAC
identifiers of clients (server/identity.py), and room state (issue 22) is forgotten when a
room ends. A Redis with an AOF (`appendonly yes`) or RDB snapshots (`save` points) would
write it there, so a node refuses to start on one (`check_at_start`) unless the operator
opted out. A Redis that cannot be reached at start does not stop the node:
`PersistenceCheck` asks again before the first write, again after every outage of that
Redis, and before the first write once `recheck_every` seconds (on an injected `Clock`)
have passed since it last asked, so a Redis switched to persistence at run time
(`CONFIG SET appendonly yes`) gets nothing more written to it (issue 19).

`judge` decides from the answers to `CONFIG GET appendonly` and `CONFIG GET save` alone;
`read_persistence_settings` is the only code here that talks to Redis. What the data is and
the words said to the operator come from an `EphemeralUse` (`RATE_LIMIT_COUNTERS` today).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, Unpack

from atopos.clock import Clock, SystemClock
from atopos.errors import InvalidInput, Unavailable

__all__ = [
    "OPT_OUT_VARIABLE",
    "RATE_LIMIT_COUNTERS",
    "RECHECK_EVERY",
    "UNAVAILABLE_MESSAGE",
    "CheckOptions",
    "EphemeralUse",
    "Finding",
    "Persistence",
    "PersistenceCheck",
    "Settings",
    "check_at_start",
    "judge",
    "read_persistence_settings",
    "refusal",
]

# How often (seconds) a Redis that passed is asked again, so that persistence switched on at
# run time is caught: one CONFIG round trip a minute, shared by the requests waiting for it.
RECHECK_EVERY = 60.0
# The answers of one Redis node: CONFIG GET's name → value, as text.
Settings = Mapping[str, str]
# None stands for a Redis that refused CONFIG (renamed, or denied by an ACL).
ReadSettings = Callable[[str], Sequence[Settings] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class EphemeralUse:
    """One kind of data kept on a Redis that must persist nothing, with the words the
    operator is told when it does (a refusal at start, log lines, the 503 message)."""

    # The environment variable with which the operator accepts a persistent Redis.
    opt_out_variable: str
    # Answered to clients (503) while the data cannot be written.
    unavailable_message: str
    # The refusal's subject when the data would go to the storage's (durable) Redis by default.
    default_subject: str
    # The refusal's subject when the operator named this Redis.
    explicit_subject: str
    # How to fix it, ending the refusal sentence.
    fix: str
    # The data, in the refusal: what must never reach a disk, and what is checked.
    at_risk: str
    checked: str
    # Logged (warning) when the Redis cannot be reached at start.
    unreachable_at_start: str
    # Logged (error, once) when the Redis is found persistent after start.
    refused_later: str
    # The logger of the component that keeps the data there.
    logger: str
    # The Redis client name of the check's connections (CLIENT LIST).
    client_name: str


RATE_LIMIT_COUNTERS = EphemeralUse(
    opt_out_variable="ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK",
    unavailable_message="The server's rate-limit storage is unavailable; try again shortly.",
    default_subject=(
        "The storage's Redis, where rate-limit counters go when ATOPOS_RATE_LIMIT_STORAGE is unset,"
    ),
    explicit_subject="The Redis of ATOPOS_RATE_LIMIT_STORAGE",
    fix=(
        "point ATOPOS_RATE_LIMIT_STORAGE at a Redis without persistence "
        "(deploy/redis/atopos-ephemeral.conf) or set it to memory:// for per-node limits"
    ),
    at_risk="the counters' client identifiers",
    checked="rate-limit counters",
    unreachable_at_start=(
        "rate-limit storage unreachable at start; its persistence is checked later"
    ),
    # The log redacts long tokens, so the setting's name is left to the docs.
    refused_later=(
        "rate-limit redis may write counters to disk; limited routes answer 503 "
        "until it persists nothing and the node is restarted (docs/operations.md)"
    ),
    logger="atopos.server",
    client_name="atopos-limits-check",
)
# The rate-limit wording under its former names (server/ratelimit.py, the tests).
OPT_OUT_VARIABLE = RATE_LIMIT_COUNTERS.opt_out_variable
UNAVAILABLE_MESSAGE = RATE_LIMIT_COUNTERS.unavailable_message


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


def refusal(
    finding: Finding, *, is_default: bool, use: EphemeralUse = RATE_LIMIT_COUNTERS
) -> str | None:
    """The one sentence a node refuses to start with, or None when the Redis persists
    nothing. `is_default`: the data would go to the storage's Redis because its own Redis
    is not configured."""
    if finding.persistence is Persistence.NONE:
        return None
    subject = use.default_subject if is_default else use.explicit_subject
    if finding.persistence is Persistence.ON_DISK:
        return (
            f"{subject} writes to disk ({finding.reason}), and {use.at_risk} "
            f"must never reach a disk; {use.fix}."
        )
    return (
        f"{subject} does not answer CONFIG GET appendonly and save (renamed or denied), so it "
        f"cannot be checked that {use.checked} stay off disk; {use.fix}, or set "
        f"{use.opt_out_variable}=1 if you know that it persists nothing."
    )


class CheckOptions(TypedDict, total=False):
    """What `check_at_start` passes on to `PersistenceCheck`."""

    read: ReadSettings | None
    use: EphemeralUse
    clock: Clock | None
    recheck_every: float | None


def check_at_start(
    url: str, *, is_default: bool, **options: Unpack[CheckOptions]
) -> PersistenceCheck:
    """Ask the Redis at once; raise InvalidInput (one sentence) when it persists or will not
    say. When it cannot be reached, the node starts anyway (and answers 503 until it can)
    and the returned check asks again before the first write."""
    check = PersistenceCheck(url, is_default=is_default, **options)
    check._ask_at_start()
    return check


class PersistenceCheck:
    """Before data is written: has the Redis been seen to persist nothing since it last
    failed, within the last `recheck_every` seconds (None: never asked again while it
    answers)? If not, ask it (one question at a time, shared by the requests waiting for
    it). A Redis that persists makes every request that needs it fail closed (503), with one
    error line in the log, until the node is restarted."""

    def __init__(
        self,
        url: str,
        *,
        is_default: bool,
        read: ReadSettings | None = None,
        use: EphemeralUse = RATE_LIMIT_COUNTERS,
        clock: Clock | None = None,
        recheck_every: float | None = RECHECK_EVERY,
    ) -> None:
        self._url = url
        self._is_default = is_default
        self._use = use
        self._read = read or functools.partial(read_persistence_settings, use=use)
        self._log = logging.getLogger(use.logger)
        self._clock = clock or SystemClock()
        self._recheck_every = recheck_every
        self._is_verified = False
        self._verified_at = self._clock.monotonic()
        self._is_refused = False
        self._asking: asyncio.Future[Sequence[Settings] | None] | None = None

    @property
    def is_verified(self) -> bool:
        """Seen to persist nothing, and not yet due to be asked again."""
        return self._is_verified and not self._is_due()

    @property
    def is_refused(self) -> bool:
        return self._is_refused

    async def ensure(self) -> None:
        """Return when the data may be written; raise Unavailable when it may not."""
        if self.is_verified:
            return
        if self._is_refused:
            raise Unavailable(self._use.unavailable_message)
        if self._asking is None:
            # A thread: the question is a few blocking round trips on a fresh connection,
            # asked after start, after an outage and once per recheck_every, not per request.
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._read, self._url))
            self._asking.add_done_callback(self._asked)
        # Shielded: a request that goes away does not cancel the question for the others.
        answers = await asyncio.shield(self._asking)
        if self.is_verified:
            return  # another waiter took this answer in
        finding = judge(answers)
        if refusal(finding, is_default=self._is_default, use=self._use) is None:
            self._passed()
            return
        # Found persistent, at start-up, after an outage or at a periodic question alike.
        self._is_verified = False
        if not self._is_refused:
            self._is_refused = True
            self._log.error(self._use.refused_later, extra={"reason": finding.reason})
        raise Unavailable(self._use.unavailable_message)

    def _ask_at_start(self) -> None:
        """The question of `check_at_start`, blocking: the event loop serves no one yet."""
        try:
            answers = self._read(self._url)
        except Unavailable:
            self._log.warning(self._use.unreachable_at_start)
            return
        sentence = refusal(judge(answers), is_default=self._is_default, use=self._use)
        if sentence is not None:
            raise InvalidInput(sentence)
        self._passed()

    def forget(self) -> None:
        """The Redis failed: it may come back as another one, so ask again next time."""
        self._is_verified = False

    def _passed(self) -> None:
        """Seen to persist nothing, now."""
        self._is_verified = True
        self._verified_at = self._clock.monotonic()

    def _is_due(self) -> bool:
        if self._recheck_every is None:
            return False
        return self._clock.monotonic() - self._verified_at >= self._recheck_every

    def _asked(self, asking: asyncio.Future[Sequence[Settings] | None]) -> None:
        if self._asking is asking:
            self._asking = None
        if not asking.cancelled():
            asking.exception()  # retrieved here, so an unawaited failure logs nothing


def read_persistence_settings(
    url: str, *, use: EphemeralUse = RATE_LIMIT_COUNTERS
) -> list[dict[str, str]] | None:
    """`appendonly` and `save` of the Redis at `url`, or of every node of a Cluster (the
    replicas too: they receive the data as well). None when CONFIG is refused; raises
    Unavailable when Redis cannot be reached."""
    # Imported here: a node that keeps its counters in memory never loads the Redis client.
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisClusterException, RedisError, ResponseError

    from atopos.storage.redis_clients import Retries, sync_client

    try:
        with sync_client(url, client_name=use.client_name, retries=Retries.NEVER) as client:
            if isinstance(client, RedisCluster):
                cluster: Any = client  # redis-py's Cluster methods are untyped
                return [_settings_of(node.redis_connection) for node in cluster.get_nodes()]
            return [_settings_of(client)]
    except ResponseError:
        # "unknown command" (renamed) or NOPERM (an ACL): Redis understood and said no.
        return None
    except (RedisError, RedisClusterException, OSError) as exc:
        # The cause is kept for the caller's log line (its class name only).
        raise Unavailable(use.unavailable_message) from exc


def _settings_of(client: Any) -> dict[str, str]:
    settings: dict[str, str] = {}
    # One name per CONFIG GET: Redis 6 takes a single pattern.
    for name in ("appendonly", "save"):
        answer = dict(client.config_get(name))
        settings.update({_text(key): _text(value) for key, value in answer.items()})
    return settings


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
