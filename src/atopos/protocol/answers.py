"""What an Atopos server's HTTP answer means to a client: a status becomes a `Failure`.

The mapping lives here once, for every client route and both drivers (sync and async): 404
gone, 403 refused (`wrong_key` when the access proof failed), 429 rate-limited (with
`Retry-After`), 413 too large, 400/422 invalid input, 507 storage full, 503 and other 5xx
unavailable, anything else a network failure. `Failure` is plain data (protocol/ imports no
error classes); the client turns it into the matching `atopos.errors` exception in one place
(`client/failures.py`). Sentences are our own (or the server's sanitized one for invalid
input) and never contain a ticket, token or key.
"""

from __future__ import annotations

import dataclasses
import enum

import msgspec

__all__ = [
    "GONE",
    "WRONG_KEY",
    "Failure",
    "FailureKind",
    "ServerAnswer",
    "failure_for_answer",
    "parse_retry_after",
]

GONE = "This secret does not exist: it expired, was already viewed, or was deleted."
WRONG_KEY = "The key in the link or the passphrase is wrong; no view was spent."
_MAX_SERVER_SENTENCE = 300
# Ask again after this long when a 429 carries no usable Retry-After.
_DEFAULT_RETRY_AFTER = 1
_MAX_RETRY_AFTER = 24 * 3600


@dataclasses.dataclass(frozen=True, slots=True)
class ServerAnswer:
    """An HTTP answer as the client saw it: its status, its (bounded) body, and its
    `Retry-After` header when it had one. `body` is None when the driver did not read it
    (a 200 reveal, whose body is the envelope stream) or it was oversized."""

    status: int
    body: bytes | None = b""
    retry_after: str | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class FailureKind(enum.Enum):
    """Why a request or a walk failed; the values are the names the test vectors use."""

    GONE = "gone"
    REFUSED = "refused"
    WRONG_KEY = "wrong_key"
    RATE_LIMITED = "rate_limited"
    PASSPHRASE_REQUIRED = "passphrase_required"  # noqa: S105 (a name, not a password)
    INVALID_INPUT = "invalid_input"
    TOO_LARGE = "too_large"
    STORAGE_FULL = "storage_full"
    UNAVAILABLE = "unavailable"
    NETWORK = "network"


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """A failure to report: its kind, one sentence for a person, and for a rate limit the
    seconds to wait."""

    kind: FailureKind
    message: str
    retry_after: int | None = None
    # For an answer over the reader's `max_bytes` (TOO_LARGE): the envelope's size and the
    # cap, so the client's front end can say what to do instead.
    size: int | None = None
    limit: int | None = None


class _ErrorBody(msgspec.Struct, frozen=True):
    error: str
    message: str


def failure_for_answer(answer: ServerAnswer, *, refused: str) -> Failure:
    """The failure an unsuccessful `answer` stands for; `refused` is the sentence of a 403."""
    status = answer.status
    if status == 404:
        return Failure(FailureKind.GONE, GONE)
    if status == 429:
        retry_after = parse_retry_after(answer.retry_after)
        unit = "second" if retry_after == 1 else "seconds"
        return Failure(
            FailureKind.RATE_LIMITED,
            f"The server is limiting requests; try again in {retry_after} {unit}.",
            retry_after,
        )
    if status == 403:
        if _server_error(answer.body) == "wrong_key":
            # The access proof failed (docs/protocol/access.md): said before any view is spent.
            return Failure(FailureKind.WRONG_KEY, WRONG_KEY)
        return Failure(FailureKind.REFUSED, refused)
    if status == 413:
        return Failure(FailureKind.TOO_LARGE, "The secret is larger than this server accepts.")
    if status in (400, 422):
        sentence = _server_sentence(answer.body) or "The server rejected the request as invalid."
        return Failure(FailureKind.INVALID_INPUT, sentence)
    if status == 507:
        return Failure(FailureKind.STORAGE_FULL, "The server's storage is full; try again later.")
    if status >= 500:
        return Failure(
            FailureKind.UNAVAILABLE,
            f"The server is unavailable right now (HTTP {status}); try again later.",
        )
    return Failure(
        FailureKind.NETWORK, f"The server answered with an unexpected HTTP status {status}."
    )


def parse_retry_after(value: str | None) -> int:
    """Seconds to wait; only delta-seconds are understood (our server sends them, and an
    HTTP date would need a clock), anything else means the default second."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit() and len(value) <= 6:
        return min(max(int(value), 0), _MAX_RETRY_AFTER)
    return _DEFAULT_RETRY_AFTER


def _server_error(body: bytes | None) -> str | None:
    """The server's error code (`error`), when the body is an error answer."""
    if body is None:
        return None
    try:
        return msgspec.json.decode(body, type=_ErrorBody).error
    except (msgspec.DecodeError, RecursionError):
        return None


def _server_sentence(body: bytes | None) -> str | None:
    """The server's `message`, reduced to one printable line: it ends up on a terminal."""
    if body is None:
        return None
    try:
        message = msgspec.json.decode(body, type=_ErrorBody).message
    except (msgspec.DecodeError, RecursionError):
        return None
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in message).split())
    return text[:_MAX_SERVER_SENTENCE] or None
