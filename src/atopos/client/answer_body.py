"""Reading a server's (small) answer body up to a limit that counts decoded bytes.

httpx inflates a compressed body one network read at a time, so a few KiB of gzip can become
hundreds of MiB before any limit is checked (a gzip bomb). Here the raw bytes are inflated
by our own decoder, which is never asked for more than the limit allows. `BoundedBody` does
the counting without I/O; `read_bounded` and `aread_bounded` feed it from a response.
"""

from __future__ import annotations

import zlib

import httpx

__all__ = ["BoundedBody", "aread_bounded", "read_bounded"]


class BoundedBody:
    """A body being received: `feed` raw (still encoded) bytes as they come; it answers
    False once the decoded body is over `limit`. Encodings other than gzip and deflate
    (which httpx does not decode either) are taken as they come. A body that does not
    inflate raises httpx.DecodingError, as httpx's own decoders do."""

    def __init__(self, limit: int, content_encoding: str) -> None:
        self.limit = limit
        self.data = bytearray()
        self._encoding = content_encoding.strip().lower()
        self._inflater: zlib._Decompress | None = None
        if self._encoding == "gzip":
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._encoding == "deflate":
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)
        self._is_first = True

    def feed(self, raw: bytes) -> bool:
        if self._inflater is None:
            self.data += raw
            return len(self.data) <= self.limit
        # max_length caps the output of this call; input it could not use stays in
        # unconsumed_tail, which is then proof that the body is over the limit.
        room = self.limit + 1 - len(self.data)
        try:
            self.data += self._inflater.decompress(raw, room)
        except zlib.error:
            if not (self._is_first and self._encoding == "deflate"):
                raise httpx.DecodingError("The body does not inflate.") from None
            # deflate is meant to be zlib-wrapped; like httpx, take a raw one too.
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            self._is_first = False
            return self.feed(raw)
        self._is_first = False
        return not self._inflater.unconsumed_tail and len(self.data) <= self.limit


def _already_read(response: httpx.Response, limit: int) -> bytes | None:
    # A transport that answers from memory (tests') has read the body already: nothing is
    # left to inflate or to stop.
    return response.content if len(response.content) <= limit else None


def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body if it is at most `limit` bytes, else None (the rest is never read
    nor inflated)."""
    if response.is_stream_consumed:
        return _already_read(response, limit)
    body = BoundedBody(limit, response.headers.get("Content-Encoding", ""))
    if all(body.feed(raw) for raw in response.iter_raw()):
        return bytes(body.data)
    return None


async def aread_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """`read_bounded` for a response of an `httpx.AsyncClient`."""
    if response.is_stream_consumed:
        return _already_read(response, limit)
    body = BoundedBody(limit, response.headers.get("Content-Encoding", ""))
    async for raw in response.aiter_raw():
        if not body.feed(raw):
            return None
    return bytes(body.data)
