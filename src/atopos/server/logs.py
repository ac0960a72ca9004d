"""Structured JSON logs with a redaction layer.

The server does not put ids, keys, tokens, tickets or addresses into log records in the
first place; this layer is the second line: every message and field is scrubbed of anything
shaped like an address or a long token before it is written. The access log names the
route template (`/api/v1/secrets/{id}/reveal`), never the path, and never the client.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["RedactingJsonFormatter", "configure_logging", "redact"]

_PATTERNS = (
    # IPv4 addresses
    re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"),
    # IPv6 addresses (anything with three or more hex groups joined by colons)
    re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
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


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "unknown"
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}:{code.co_name}"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingJsonFormatter())
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
