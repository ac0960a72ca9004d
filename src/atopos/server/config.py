"""Server settings with their defaults, read from CLI flags or environment variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path

from atopos.server.connection_guard import ConnectionLimits
from atopos.storage.urls import is_redis_url

__all__ = [
    "DEFAULT_POW_BITS",
    "RATE_LIMITED_ROUTES",
    "ServerConfig",
    "parse_flag",
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
    # Disk quota (docs/operations.md): how large the store may grow, and how many bytes one
    # client may upload per hour (its wider IPv6 networks 4 and 16 times more); 0: no quota.
    storage_quota_bytes: int = 10 * GiB
    upload_quota_per_hour_bytes: int = 1 * GiB

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            header_timeout=self.header_timeout,
            body_idle_timeout=self.body_idle_timeout,
            send_stall_timeout=self.send_stall_timeout,
            idle_timeout=self.idle_timeout,
            max_connections=self.max_connections,
            max_connections_per_client=self.max_connections_per_client,
            exempt_peers=frozenset(self.trusted_proxies),
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
        """Defaults, then ATOPOS_* variables, then the overrides (CLI flags) that are not None."""
        values: dict[str, object] = {}
        if data := os.environ.get("ATOPOS_DATA"):
            values["data_dir"] = Path(data)
        if storage := os.environ.get("ATOPOS_STORAGE"):
            values["storage_url"] = storage
        if key_file := os.environ.get("ATOPOS_KEY_FILE"):
            values["key_file"] = Path(key_file)
        if rate_storage := os.environ.get("ATOPOS_RATE_LIMIT_STORAGE"):
            values["rate_limit_storage_url"] = rate_storage
        if persistent_ok := os.environ.get("ATOPOS_RATE_LIMIT_STORAGE_PERSISTENT_OK"):
            values["accepts_persistent_rate_limit_storage"] = parse_flag(persistent_ok)
        if bits := os.environ.get("ATOPOS_POW_BITS"):
            values["pow_bits"] = int(bits)
        if level := os.environ.get("ATOPOS_LOG_LEVEL"):
            values["log_level"] = level
        if proxies := os.environ.get("ATOPOS_TRUSTED_PROXIES"):
            values["trusted_proxies"] = parse_trusted_proxies(proxies)
        if (rate := os.environ.get("ATOPOS_RATE_LIMIT")) is not None:
            values.update(rate_limits(int(rate)))
        for name, (variable, parse) in _NUMERIC_SETTINGS.items():
            if (text := os.environ.get(variable)) is not None:
                values[name] = parse(text)
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
# Settings read from one variable each, with their parser.
_NUMERIC_SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "header_timeout": ("ATOPOS_HEADER_TIMEOUT", float),
    "body_idle_timeout": ("ATOPOS_BODY_IDLE_TIMEOUT", float),
    "send_stall_timeout": ("ATOPOS_SEND_STALL_TIMEOUT", float),
    "idle_timeout": ("ATOPOS_IDLE_TIMEOUT", float),
    "max_connections": ("ATOPOS_MAX_CONNECTIONS", int),
    "max_connections_per_client": ("ATOPOS_MAX_CONNECTIONS_PER_CLIENT", int),
    "storage_quota_bytes": ("ATOPOS_STORAGE_QUOTA", parse_size),
    "upload_quota_per_hour_bytes": ("ATOPOS_UPLOAD_QUOTA_PER_HOUR", parse_size),
}


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
