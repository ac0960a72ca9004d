"""Server logs, as JSON lines or as short lines for a person, with a redaction layer.

The server does not put ids, keys, tokens, tickets or addresses into log records in the
first place; this layer is the second line: every message and field is scrubbed of anything
shaped like an address or a long token before it is written, in either format. The access
log names the route template (`/api/v1/secrets/{id}/reveal`), never the path, and never
the client. JSON is for log collectors; the human format is for `atopos serve` run on a
terminal (`resolve_log_format`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = [
    "LOG_FORMATS",
    "RedactingHumanFormatter",
    "RedactingJsonFormatter",
    "configure_logging",
    "redact",
    "resolve_log_format",
]

# "auto": human on a terminal, JSON otherwise (a file, a pipe, journald, a container).
LOG_FORMATS = ("auto", "human", "json")

_PATTERNS = (
    # Tor circuits as the onion listener names its peers (`tor-circuit:<id>`), with a port
    re.compile(r"tor-circuit:\d+(?::\d+)?"),
    # IPv4 addresses, with a port if one follows
    re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"),
    # IPv6 addresses (three or more hex groups joined by colons), with a port if one
    # follows unbracketed (`fd00::2:39836`: the port reads as one more group) or bracketed
    re.compile(
        r"(?<![\w:])\[?(?:[0-9A-Fa-f]{0,4}:){2,}[0-9A-Fa-f]{0,5}(?:\](?::\d{1,5})?)?(?![\w:])"
    ),
    # base64url / hex tokens, ids and keys: 16 or more token characters in a row
    re.compile(r"[A-Za-z0-9_\-]{16,}"),
)
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    # uvicorn adds a terminal-coloured copy of its message; JSON lines have no use for it.
    | {"message", "asctime", "color_message"}
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(str(value))


class RedactingJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _redact_value(value)
        if record.exc_info and record.exc_info[1] is not None:
            # The exception's type and where it was raised; never its message or the
            # traceback, which can carry request data.
            exc = record.exc_info[1]
            entry["exception"] = type(exc).__name__
            entry["where"] = _where(exc)
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":"))


class RedactingHumanFormatter(logging.Formatter):
    """One short line per record (`12:00:01 warning message key=value`), redacted as the
    JSON lines are: for a person watching `atopos serve` in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [moment, record.levelname.lower(), redact(record.getMessage())]
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                parts.append(f"{key}={_redact_value(value)}")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            parts.append(f"exception={type(exc).__name__} where={_where(exc)}")
        # A message could still hold a control character; a terminal would obey it.
        return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in " ".join(parts))


class _WithoutUvicornChatter(logging.Filter):
    """None of uvicorn's own notes at info level or below, in either format: its start and
    stop notes (which our start-up lines replace) and one line per WebSocket handshake that
    begins with the client's address and port (a Tor circuit's id on the onion listener)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "uvicorn.error" and record.levelno <= logging.INFO)


def resolve_log_format(requested: str, stream: object) -> str:
    """`human` or `json` for `requested` (one of LOG_FORMATS) when logs go to `stream`."""
    if requested not in LOG_FORMATS:
        raise ValueError(f"unknown log format {requested!r}")
    if requested != "auto":
        return requested
    isatty = getattr(stream, "isatty", None)
    return "human" if callable(isatty) and isatty() else "json"


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "unknown"
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}:{code.co_name}"


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send every record (ours, uvicorn's, limits') to stderr in `log_format` (human or
    json), at `level` and above."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "human":
        handler.setFormatter(RedactingHumanFormatter())
    else:
        handler.setFormatter(RedactingJsonFormatter())
    handler.addFilter(_WithoutUvicornChatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "limits"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn's access log prints client addresses and raw paths: ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.Formatter.converter = time.gmtime
