"""Server settings with their defaults, read from CLI flags or environment variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path

from atopos.errors import InvalidInput
from atopos.server.connection_guard import ConnectionLimits
from atopos.server.rooms.limits import RoomNodeLimits
from atopos.storage.urls import is_redis_url

__all__ = [
    "DEFAULT_POW_BITS",
    "RATE_LIMITED_ROUTES",
    "SETTINGS",
    "InvalidSetting",
    "ServerConfig",
    "Setting",
    "parse_flag",
    "parse_seconds",
    "parse_size",
    "parse_trusted_proxies",
    "rate_limits",
]

# A laptop browser hashing with WebCrypto in a worker needs about half a second for 2**16
# attempts; the CLI needs a few hundredths. See docs/protocol/access.md.
DEFAULT_POW_BITS = 16
MiB = 1024 * 1024
GiB = 1024 * MiB

# The route classes that have a per-minute limit each (the `rate_<class>` settings).
RATE_LIMITED_ROUTES = ("create", "challenge", "ticket", "reveal", "manage")
_GUARD_DEFAULTS = ConnectionLimits()
_ROOM_DEFAULTS = RoomNodeLimits()
_RELAY_DEFAULTS = _ROOM_DEFAULTS.relay


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # sqlite:///path/to/atopos.db (default: <data_dir>/atopos.db), redis://host:port/0 or
    # redis+cluster://host:port[,host:port] (docs/storage-redis.md)
    storage_url: str | None = None
    # The signing key shared by nodes (server/keyfile.py); None: a random key in RAM.
    key_file: Path | None = None
    # Where rate-limit counters live: memory:// or a Redis URL. Default: the storage's Redis
    # when the storage is Redis (limits hold across nodes), else this process's memory. A
    # Redis here must persist nothing, or the node refuses to start
    # (storage/ephemeral_redis.py)...
    rate_limit_storage_url: str | None = None
    # ...unless the operator accepts that counters may reach disk
    # (ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK=1): then it is not checked.
    accepts_persistent_rate_limit_storage: bool = False
    # Where rooms live: None for this process's RAM (one node), or the room Redis shared by
    # every node (redis:// or redis+cluster://). It must persist nothing, or the node refuses
    # to start (server/rooms/redis_relays.py, docs/operations.md)...
    room_redis_url: str | None = None
    # ...unless the operator accepts that room state may reach disk
    # (ATOPOS_ROOM_REDIS_PERSISTENT_OK=1).
    accepts_persistent_room_redis: bool = False
    pow_bits: int = DEFAULT_POW_BITS
    # Content limit of one secret; the envelope's overhead (header, tags, padding) is added.
    max_content_bytes: int = 100 * MiB
    max_json_bytes: int = 4096
    default_ttl: int = 24 * 3600
    max_ttl: int = 30 * 24 * 3600
    max_views: int = 100
    challenge_ttl: int = 120
    ticket_ttl: int = 60
    # Requests per minute per ephemeral client identifier and route class; 0 turns a limit off.
    rate_create: int = 60
    rate_challenge: int = 120
    rate_ticket: int = 60
    rate_reveal: int = 60
    rate_manage: int = 60
    sweep_interval: float = 30.0
    # Worker processes sharing the listening socket and the store (server/workers.py); without
    # a rate-limit Redis they count rate limits in shared memory (server/shared_counters.py).
    workers: int = 1
    # How long one of their writes waits for the SQLite writers' lock before it is answered
    # 503 with nothing written (storage/writers_lock.py).
    writer_lock_wait: float = 5.0
    # How much lower the workers' CPU priority is than the writer process's (a nice
    # increment, 0 to 19): every write waits for that one process, so on a busy machine it
    # gets the CPU first (docs/operations.md, "Worker processes").
    worker_nice: int = 5
    log_level: str = "info"
    # Honour X-Forwarded-For (its last entry) from these proxy addresses only, e.g. Caddy on
    # the same machine: ATOPOS_TRUSTED_PROXIES=127.0.0.1 (deploy/, docs/operations.md).
    trusted_proxies: tuple[str, ...] = ()
    # Connection timeouts (seconds) and caps (server/connection_guard.py, docs/operations.md).
    header_timeout: float = _GUARD_DEFAULTS.header_timeout
    body_idle_timeout: float = _GUARD_DEFAULTS.body_idle_timeout
    send_stall_timeout: float = _GUARD_DEFAULTS.send_stall_timeout
    idle_timeout: float = _GUARD_DEFAULTS.idle_timeout
    max_connections: int = _GUARD_DEFAULTS.max_connections
    max_connections_per_client: int = _GUARD_DEFAULTS.max_connections_per_client
    max_head_bytes: int = _GUARD_DEFAULTS.max_head_bytes
    body_min_rate: int = _GUARD_DEFAULTS.body_min_rate
    # Disk quota (docs/operations.md): how large the store may grow, and how many bytes one
    # client may upload per hour (its wider IPv6 networks 4 and 16 times more); 0: no quota.
    storage_quota_bytes: int = 10 * GiB
    upload_quota_per_hour_bytes: int = 1 * GiB
    # The room relay's caps (server/rooms/limits.py, docs/protocol/rooms.md section 13).
    room_max_members: int = _RELAY_DEFAULTS.max_members
    max_rooms: int = _ROOM_DEFAULTS.max_rooms
    room_connections_per_client: int = _ROOM_DEFAULTS.connections_per_client
    rooms_per_client_per_hour: int = _ROOM_DEFAULTS.rooms_per_client_per_hour
    room_empty_grace: float = _RELAY_DEFAULTS.empty_grace_seconds

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            header_timeout=self.header_timeout,
            body_idle_timeout=self.body_idle_timeout,
            send_stall_timeout=self.send_stall_timeout,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
            max_connections_per_client=self.max_connections_per_client,
            exempt_peers=frozenset(self.trusted_proxies),
            max_head_bytes=self.max_head_bytes,
            body_min_rate=self.body_min_rate,
        )

    def room_limits(self) -> RoomNodeLimits:
        return dataclasses.replace(
            _ROOM_DEFAULTS,
            relay=dataclasses.replace(
                _RELAY_DEFAULTS,
                max_members=self.room_max_members,
                empty_grace_seconds=self.room_empty_grace,
            ),
            max_rooms=self.max_rooms,
            connections_per_client=self.room_connections_per_client,
            rooms_per_client_per_hour=self.rooms_per_client_per_hour,
        )

    def resolved_storage_url(self) -> str:
        return self.storage_url or f"sqlite:///{(self.data_dir / 'atopos.db').resolve()}"

    def resolved_rate_limit_storage_url(self) -> str | None:
        """None for this process's memory; otherwise the Redis that counts for all nodes.
        With every limit off, memory: the failure counts that raise the proof-of-work price
        are still kept, keyed by client identifiers, and then count per node, so that a node
        without limits needs no Redis checked for persistence."""
        if not self.has_rate_limits():
            return None
        url = self.rate_limit_storage_url
        if url is None and self.has_redis_storage():
            url = self.storage_url
        return None if url is None or url.startswith("memory://") else url

    def shares_counters_between_workers(self) -> bool:
        """Whether the node's workers count rate limits in the table they share in memory
        (server/shared_counters.py): several workers and no rate-limit Redis."""
        return self.workers > 1 and self.resolved_rate_limit_storage_url() is None

    def has_redis_storage(self) -> bool:
        return self.storage_url is not None and is_redis_url(self.storage_url)

    def per_minute_limits(self) -> dict[str, int]:
        """Requests per minute by route class (0: that class is not limited)."""
        return {route: getattr(self, f"rate_{route}") for route in RATE_LIMITED_ROUTES}

    def has_rate_limits(self) -> bool:
        """Whether any route class is limited (ATOPOS_RATE_LIMIT=0 turns them all off)."""
        return any(amount > 0 for amount in self.per_minute_limits().values())

    @classmethod
    def from_env(cls, **overrides: object) -> ServerConfig:
        """Defaults, then the ATOPOS_* variables of SETTINGS (in its order; an empty one is
        unset), then the overrides (CLI flags) that are not None. A variable that does not
        parse is InvalidSetting, naming it (no setting that can hold a password is parsed
        here, so the parser's words may quote the value)."""
        values: dict[str, object] = {}
        for setting in SETTINGS:
            text = os.environ.get(setting.variable)
            if not text:
                continue
            try:
                value = setting.parse(text)
            except ValueError as exc:
                raise InvalidSetting(
                    f"{setting.variable} must be {setting.form} ({exc})."
                ) from None
            values.update(dict.fromkeys(setting.fields, value))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def parse_size(text: str) -> int:
    """A byte count: `1048576`, or with a binary suffix `512K`, `100M`, `10G`, `1T`."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if value and value[-1] in _SIZE_SUFFIXES:
        scale = _SIZE_SUFFIXES[value[-1]]
        value = value[:-1]
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"not a size in bytes: {text!r}")
    return int(value) * scale


_SIZE_SUFFIXES = {"K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}


def parse_trusted_proxies(text: str) -> tuple[str, ...]:
    """Proxy addresses separated by commas or spaces, in the form the server sees them as
    peers (`127.0.0.1`, `::1`); a ValueError for anything that is not an IP address."""
    return tuple(
        str(ipaddress.ip_address(item)) for item in re.split(r"[\s,]+", text.strip()) if item
    )


def parse_flag(text: str) -> bool:
    """A yes/no setting: 1, true, yes, on or 0, false, no, off; a ValueError otherwise."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def rate_limits(per_minute: int) -> dict[str, int]:
    """One per-minute limit for every route class (0 turns rate limiting off)."""
    return {f"rate_{route}": per_minute for route in RATE_LIMITED_ROUTES}


def parse_seconds(text: str) -> int:
    """A duration in whole seconds: `90`, or `90s`, `10m`, `24h`, `30d`."""
    value = text.strip().lower()
    scale = _DURATION_SUFFIXES.get(value[-1:], 0)
    digits = value[:-1] if scale else value
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"not a duration: {text!r}")
    return int(digits) * (scale or 1)


_DURATION_SUFFIXES = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("negative")
    return value


MAX_WORKERS = 64


def _worker_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError("not a worker count")
    return value


MAX_NICE = 19


def _nice_increment(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_NICE:
        raise ValueError("not a nice increment")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 1e9:
        raise ValueError("not a positive number of seconds")
    return value


def _positive_size(text: str) -> int:
    value = parse_size(text)
    if value < 1:
        raise ValueError("not a positive size")
    return value


class InvalidSetting(InvalidInput, ValueError):
    """An ATOPOS_* variable that does not parse (one sentence for the operator)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One operator setting: its variable, the fields it sets, its parser and the form a
    value takes (for the error message)."""

    variable: str
    fields: tuple[str, ...]
    parse: Callable[[str], object]
    form: str


def _setting(variable: str, field: str, parse: Callable[[str], object], form: str) -> Setting:
    return Setting(variable, (field,), parse, form)


_WHOLE = "a whole number"
_SIZE = "a size such as 100M or 1G"
_DURATION = "a duration such as 90s, 10m, 24h or 30d"
_SECONDS = "a positive number of seconds"
# Every operator setting, in the order they apply (ATOPOS_RATE_LIMIT sets every route class,
# then one class's own variable may change it). docs/operations.md, "Node settings", lists
# the same variables; a test holds the two together.
SETTINGS: tuple[Setting, ...] = (
    _setting("ATOPOS_DATA", "data_dir", Path, "a directory"),
    _setting("ATOPOS_STORAGE", "storage_url", str, "a storage URL"),
    _setting("ATOPOS_KEY_FILE", "key_file", Path, "a file"),
    _setting("ATOPOS_RATE_LIMIT_STORAGE", "rate_limit_storage_url", str, "a Redis URL"),
    _setting(
        "ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK",
        "accepts_persistent_rate_limit_storage",
        parse_flag,
        "1 or 0",
    ),
    _setting("ATOPOS_ROOM_REDIS_URL", "room_redis_url", str, "a Redis URL"),
    _setting(
        "ATOPOS_ROOM_REDIS_PERSISTENT_OK", "accepts_persistent_room_redis", parse_flag, "1 or 0"
    ),
    _setting("ATOPOS_POW_BITS", "pow_bits", _count, _WHOLE),
    _setting("ATOPOS_LOG_LEVEL", "log_level", str, "debug, info, warning or error"),
    _setting("ATOPOS_TRUSTED_PROXIES", "trusted_proxies", parse_trusted_proxies, "IP addresses"),
    Setting(
        "ATOPOS_RATE_LIMIT",
        tuple(f"rate_{route}" for route in RATE_LIMITED_ROUTES),
        _count,
        _WHOLE,
    ),
    *(
        _setting(f"ATOPOS_RATE_{route.upper()}", f"rate_{route}", _count, _WHOLE)
        for route in RATE_LIMITED_ROUTES
    ),
    _setting("ATOPOS_MAX_SIZE", "max_content_bytes", parse_size, _SIZE),
    _setting("ATOPOS_DEFAULT_EXPIRY", "default_ttl", parse_seconds, _DURATION),
    _setting("ATOPOS_MAX_EXPIRY", "max_ttl", parse_seconds, _DURATION),
    _setting("ATOPOS_MAX_VIEWS", "max_views", _count, _WHOLE),
    _setting("ATOPOS_CHALLENGE_TTL", "challenge_ttl", parse_seconds, _DURATION),
    _setting("ATOPOS_TICKET_TTL", "ticket_ttl", parse_seconds, _DURATION),
    _setting("ATOPOS_SWEEP_INTERVAL", "sweep_interval", _seconds, _SECONDS),
    _setting("ATOPOS_WORKERS", "workers", _worker_count, "a whole number from 1 to 64"),
    _setting("ATOPOS_WRITER_LOCK_WAIT", "writer_lock_wait", _seconds, _SECONDS),
    _setting("ATOPOS_WORKER_NICE", "worker_nice", _nice_increment, "a whole number from 0 to 19"),
    _setting("ATOPOS_STORAGE_QUOTA", "storage_quota_bytes", parse_size, _SIZE),
    _setting("ATOPOS_UPLOAD_QUOTA_PER_HOUR", "upload_quota_per_hour_bytes", parse_size, _SIZE),
    _setting("ATOPOS_HEADER_TIMEOUT", "header_timeout", _seconds, _SECONDS),
    _setting("ATOPOS_BODY_IDLE_TIMEOUT", "body_idle_timeout", _seconds, _SECONDS),
    _setting("ATOPOS_SEND_STALL_TIMEOUT", "send_stall_timeout", _seconds, _SECONDS),
    _setting("ATOPOS_IDLE_TIMEOUT", "idle_timeout", _seconds, _SECONDS),
    _setting("ATOPOS_MAX_CONNECTIONS", "max_connections", _count, _WHOLE),
    _setting("ATOPOS_MAX_CONNECTIONS_PER_CLIENT", "max_connections_per_client", _count, _WHOLE),
    _setting("ATOPOS_MAX_HEADER_SIZE", "max_head_bytes", _positive_size, _SIZE),
    _setting(
        "ATOPOS_BODY_MIN_RATE", "body_min_rate", _positive_size, "bytes a second, such as 16K"
    ),
    _setting("ATOPOS_ROOM_MAX_MEMBERS", "room_max_members", _count, _WHOLE),
    _setting("ATOPOS_MAX_ROOMS", "max_rooms", _count, _WHOLE),
    _setting("ATOPOS_ROOM_CONNECTIONS_PER_CLIENT", "room_connections_per_client", _count, _WHOLE),
    _setting("ATOPOS_ROOMS_PER_CLIENT_PER_HOUR", "rooms_per_client_per_hour", _count, _WHOLE),
    _setting("ATOPOS_ROOM_EMPTY_GRACE", "room_empty_grace", _seconds, _SECONDS),
)
