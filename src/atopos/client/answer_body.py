"""Reading a server's (small) answer body up to a limit that counts decoded bytes.

httpx inflates a compressed body one network read at a time, so a few KiB of gzip can become
hundreds of MiB before any limit is checked (a gzip bomb). Here the raw bytes are inflated
by our own decoder, which is never asked for more than the limit allows.
"""

from __future__ import annotations

import zlib

import httpx

__all__ = ["read_bounded"]


def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body if it is at most `limit` bytes, else None (the rest is never read
    nor inflated). Encodings other than gzip and deflate (which httpx does not decode
    either) are taken as they come. A body that does not inflate raises httpx.DecodingError,
    as httpx's own decoders do."""
    if response.is_stream_consumed:
        # Already in memory (a transport that answers from memory, as tests' do): nothing
        # is left to inflate or to stop.
        return response.content if len(response.content) <= limit else None
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("gzip", "deflate"):
        return _read_plain(response, limit)
    # deflate is meant to be zlib-wrapped; like httpx, take a raw one too.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    data = bytearray()
    is_first = True
    for raw in response.iter_raw():
        try:
            # max_length caps the output of this call; input it could not use stays in
            # unconsumed_tail, which is then proof that the body is over the limit.
            piece = inflater.decompress(raw, limit + 1 - len(data))
        except zlib.error:
            if not (is_first and encoding == "deflate"):
                raise httpx.DecodingError("The body does not inflate.") from None
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            piece = _raw_deflate(inflater, raw, limit + 1)
        is_first = False
        data += piece
        if inflater.unconsumed_tail or len(data) > limit:
            return None
    return bytes(data)


def _raw_deflate(inflater: zlib._Decompress, raw: bytes, max_length: int) -> bytes:
    try:
        return inflater.decompress(raw, max_length)
    except zlib.error:
        raise httpx.DecodingError("The body does not inflate.") from None


def _read_plain(response: httpx.Response, limit: int) -> bytes | None:
    data = bytearray()
    for raw in response.iter_raw():
        data += raw
        if len(data) > limit:
            return None
    return bytes(data)
