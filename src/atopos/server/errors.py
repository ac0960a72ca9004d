"""The one place where errors become HTTP responses: a status, a code and one sentence."""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from atopos.errors import (
    AnswerTooLarge,
    AtoposError,
    Gone,
    InvalidInput,
    MalformedStamp,
    RateLimited,
    Refused,
    StorageFull,
    TooLarge,
    Unavailable,
    WrongKey,
)

__all__ = ["ErrorResponse", "error_response", "response_for", "status_of"]


class ErrorResponse(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """The body of every error answer of the HTTP API; `size` (the envelope's bytes) only
    in `answer_too_large`."""

    error: str
    message: str
    size: int | None = None


# Most specific first.
_STATUSES: tuple[tuple[type[AtoposError], int, str], ...] = (
    (RateLimited, 429, "rate_limited"),
    (WrongKey, 403, "wrong_key"),
    (AnswerTooLarge, 413, "answer_too_large"),
    (Refused, 403, "refused"),
    (Gone, 404, "gone"),
    (TooLarge, 413, "too_large"),
    (MalformedStamp, 422, "invalid_stamp"),
    (InvalidInput, 422, "invalid_input"),
    (StorageFull, 507, "storage_full"),
    (Unavailable, 503, "unavailable"),
)
_encode = msgspec.json.encode


def status_of(error: AtoposError) -> tuple[int, str]:
    for kind, status, code in _STATUSES:
        if isinstance(error, kind):
            return status, code
    return 500, "internal"


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    size: int | None = None,
) -> Response:
    return Response(
        _encode(ErrorResponse(code, message, size)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def response_for(error: AtoposError) -> Response:
    status, code = status_of(error)
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, Unavailable):
        headers["Retry-After"] = "5"
    size = error.size if isinstance(error, AnswerTooLarge) else None
    return error_response(status, code, error.message, headers, size)
