"""Reading a server's answer body with its decoded size under our control.

httpx inflates a compressed body one network read at a time, so a few KiB of gzip can become
hundreds of MiB in one piece, before any limit is checked (a gzip bomb). Here the raw bytes
are inflated by our own `Inflater`, which never makes a piece larger than it is asked for:
`read_bounded`/`aread_bounded` stop a small (JSON) answer at its limit, `iter_inflated`/
`aiter_inflated` stream a large one (the envelope) in pieces of bounded size.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

__all__ = [
    "STREAM_PIECE_BYTES",
    "Inflater",
    "aiter_inflated",
    "aread_bounded",
    "iter_inflated",
    "read_bounded",
]

# The largest piece a streamed body is handed on in.
STREAM_PIECE_BYTES = 256 * 1024


class Inflater:
    """Decodes a body as its `Content-Encoding` says, a raw piece at a time, without I/O.
    gzip and deflate are inflated here; other encodings (which httpx does not decode
    either) pass as they come. A body that does not inflate raises httpx.DecodingError, as
    httpx's own decoders do."""

    def __init__(self, content_encoding: str) -> None:
        self._encoding = content_encoding.strip().lower()
        self._inflater: zlib._Decompress | None = None
        if self._encoding == "gzip":
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._encoding == "deflate":
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)
        self._is_first = True

    def pieces(self, raw: bytes, max_piece: int) -> Iterator[bytes]:
        """The decoded bytes of `raw`, in pieces of at most `max_piece` bytes, made only as
        they are asked for."""
        if self._inflater is None:
            for start in range(0, len(raw), max_piece):
                yield raw[start : start + max_piece]
            return
        data = raw
        while data:
            piece = self._decompress(data, max_piece)
            data = self._inflater.unconsumed_tail
            if piece:
                yield piece

    def _decompress(self, data: bytes, max_piece: int) -> bytes:
        assert self._inflater is not None
        try:
            piece = self._inflater.decompress(data, max_piece)
        except zlib.error:
            if not (self._is_first and self._encoding == "deflate"):
                raise httpx.DecodingError("The body does not inflate.") from None
            # deflate is meant to be zlib-wrapped; like httpx, take a raw one too.
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            self._is_first = False
            return self._decompress(data, max_piece)
        self._is_first = False
        return piece


def _already_read(response: httpx.Response, limit: int) -> bytes | None:
    # A transport that answers from memory (tests') has read the body already: nothing is
    # left to inflate or to stop.
    return response.content if len(response.content) <= limit else None


def _collect(data: bytearray, pieces: Iterator[bytes], limit: int) -> bool:
    """Add `pieces` to `data` while it stays within `limit`; False once it would not."""
    for piece in pieces:
        data += piece
        if len(data) > limit:
            return False
    return True


def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body if it is at most `limit` bytes, else None (the rest is never read
    nor inflated)."""
    if response.is_stream_consumed:
        return _already_read(response, limit)
    inflater = Inflater(response.headers.get("Content-Encoding", ""))
    data = bytearray()
    for raw in response.iter_raw():
        if not _collect(data, inflater.pieces(raw, limit + 1), limit):
            return None
    return bytes(data)


async def aread_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """`read_bounded` for a response of an `httpx.AsyncClient`."""
    if response.is_stream_consumed:
        return _already_read(response, limit)
    inflater = Inflater(response.headers.get("Content-Encoding", ""))
    data = bytearray()
    async for raw in response.aiter_raw():
        if not _collect(data, inflater.pieces(raw, limit + 1), limit):
            return None
    return bytes(data)


def iter_inflated(response: httpx.Response) -> Iterator[bytes]:
    """The decoded body as it streams, in pieces of at most STREAM_PIECE_BYTES."""
    if response.is_stream_consumed:
        yield from Inflater("").pieces(response.content, STREAM_PIECE_BYTES)
        return
    inflater = Inflater(response.headers.get("Content-Encoding", ""))
    for raw in response.iter_raw():
        yield from inflater.pieces(raw, STREAM_PIECE_BYTES)


async def aiter_inflated(response: httpx.Response) -> AsyncIterator[bytes]:
    """`iter_inflated` for a response of an `httpx.AsyncClient`."""
    if response.is_stream_consumed:
        for piece in Inflater("").pieces(response.content, STREAM_PIECE_BYTES):
            yield piece
        return
    inflater = Inflater(response.headers.get("Content-Encoding", ""))
    async for raw in response.aiter_raw():
        for piece in inflater.pieces(raw, STREAM_PIECE_BYTES):
            yield piece
