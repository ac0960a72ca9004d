"""Reading request bodies with limits enforced while reading, and strict JSON decoding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request

from atopos.errors import InvalidInput, TooLarge

__all__ = ["declared_length", "limited_stream", "read_json"]

T = TypeVar("T")


def declared_length(request: Request, limit: int) -> int | None:
    """The Content-Length, if given (InvalidInput if malformed, TooLarge over `limit`)."""
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.isdigit():
        raise InvalidInput("The Content-Length header is malformed.")
    length = int(header)
    if length > limit:
        raise TooLarge(f"The request body is larger than the limit of {limit} bytes.")
    return length


async def limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body in pieces; TooLarge as soon as more than `limit` bytes arrived."""
    declared_length(request, limit)
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > limit:
                raise TooLarge(f"The request body is larger than the limit of {limit} bytes.")
            if piece:
                yield piece
    except ClientDisconnect:
        # The client left mid-upload: nothing is kept, and nobody is there to answer.
        raise InvalidInput("The request body was cut off before its end.") from None


async def read_json(request: Request, schema: type[T], limit: int) -> T:
    body = bytearray()
    async for piece in limited_stream(request, limit):
        body += piece
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"The request body does not match the schema: {_safe(exc)}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidInput("The request body is not valid JSON in UTF-8.") from None


def _safe(exc: msgspec.ValidationError) -> str:
    # msgspec names the field and the expected type, never the value it got.
    text = str(exc)
    return text if len(text) < 200 else text[:200]
