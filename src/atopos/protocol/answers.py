"""What an Atopos server's HTTP answer means to a client: a status becomes an Atopos error.

The mapping lives here once, for every client route and both drivers (sync and async):
404 Gone, 403 Refused, 429 RateLimited (with `Retry-After`), 413 TooLarge, 400/422
InvalidInput, 507 StorageFull, 503 and other 5xx Unavailable, anything else NetworkError.
Sentences are our own (or the server's sanitized one for invalid input) and never contain a
ticket, token or key.
"""

from __future__ import annotations

import dataclasses

import msgspec

from atopos.errors import (
    AtoposError,
    Gone,
    InvalidInput,
    NetworkError,
    RateLimited,
    Refused,
    StorageFull,
    TooLarge,
    Unavailable,
)

__all__ = ["GONE", "ServerAnswer", "error_for_answer", "parse_retry_after"]

GONE = "This secret does not exist: it expired, was already viewed, or was deleted."
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


class _ErrorBody(msgspec.Struct, frozen=True):
    error: str
    message: str


def error_for_answer(answer: ServerAnswer, *, refused: str) -> AtoposError:
    """The error an unsuccessful `answer` stands for; `refused` is the sentence of a 403."""
    status = answer.status
    if status == 404:
        return Gone(GONE)
    if status == 429:
        retry_after = parse_retry_after(answer.retry_after)
        unit = "second" if retry_after == 1 else "seconds"
        return RateLimited(
            f"The server is limiting requests; try again in {retry_after} {unit}.", retry_after
        )
    if status == 403:
        return Refused(refused)
    if status == 413:
        return TooLarge("The secret is larger than this server accepts.")
    if status in (400, 422):
        return InvalidInput(
            _server_sentence(answer.body) or "The server rejected the request as invalid."
        )
    if status == 507:
        return StorageFull("The server's storage is full; try again later.")
    if status >= 500:
        return Unavailable(f"The server is unavailable right now (HTTP {status}); try again later.")
    return NetworkError(f"The server answered with an unexpected HTTP status {status}.")


def parse_retry_after(value: str | None) -> int:
    """Seconds to wait; only delta-seconds are understood (our server sends them, and an
    HTTP date would need a clock), anything else means the default second."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit() and len(value) <= 6:
        return min(max(int(value), 0), _MAX_RETRY_AFTER)
    return _DEFAULT_RETRY_AFTER


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
