"""What the server checks of an uploaded envelope without any key: the header parses, the
length is one an envelope with that header can have, and the bytes after the header look
like ciphertext. Garbage (a file uploaded raw, a text body, a zero fill) never reaches the
store; docs/protocol/access.md lists these checks.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from atopos.crypto.envelope import Header, is_envelope_size, parse_header
from atopos.crypto.errors import CryptoError
from atopos.errors import InvalidInput
from atopos.server.secrets.sizes import min_envelope_bytes

__all__ = ["checked_envelope", "read_header"]

_NOT_AN_ENVELOPE = "The body is not an Atopos envelope."
# Ciphertext does not compress; text and most files do. The first bytes after the header
# (up to this many) must not shrink below the ratio under zlib's fastest level.
_SAMPLE_BYTES = 64 * 1024
_MIN_COMPRESSED_RATIO = 0.9
# zlib's MIN_LOOKAHEAD: a window of 2**bits bytes finds matches up to 2**bits - 262 back.
_DEFLATE_LOOKAHEAD = 262


async def read_header(body: AsyncIterator[bytes]) -> tuple[Header, bytes]:
    """Read until the envelope header parses; return it and every byte read so far."""
    head = bytearray()
    async for piece in body:
        head += piece
        try:
            header = parse_header(bytes(head))
        except CryptoError:
            raise InvalidInput(_NOT_AN_ENVELOPE) from None
        if header is not None:
            return header, bytes(head)
    raise InvalidInput(_NOT_AN_ENVELOPE)


async def checked_envelope(
    header: Header, head: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The whole body, as it streams; InvalidInput (and so nothing stored) as soon as the
    sample after the header compresses, or at the end if the length is impossible."""
    size = len(head)
    sample = bytearray(head[len(header.raw) : len(header.raw) + _SAMPLE_BYTES])
    is_sampled = False
    yield head
    async for piece in rest:
        size += len(piece)
        if not is_sampled and len(sample) < _SAMPLE_BYTES:
            sample += piece[: _SAMPLE_BYTES - len(sample)]
        if not is_sampled and len(sample) >= _SAMPLE_BYTES:
            _check_sample(sample)
            is_sampled = True
        yield piece
    if not is_sampled:
        _check_sample(sample)
    if size < min_envelope_bytes() or not is_envelope_size(header, size):
        raise InvalidInput(_NOT_AN_ENVELOPE)


def _check_sample(sample: bytearray) -> None:
    compressor = zlib.compressobj(1, zlib.DEFLATED, _window_bits(len(sample)))
    compressed = len(compressor.compress(sample)) + len(compressor.flush())
    if compressed < _MIN_COMPRESSED_RATIO * len(sample):
        raise InvalidInput(_NOT_AN_ENVELOPE)


def _window_bits(sample_bytes: int) -> int:
    """The smallest zlib window that still reaches back over the whole sample (deflate
    matches at most the window less 262 bytes back): the same output length as the default
    32 KiB window, and a small sample no longer pays for setting up the large one
    (docs/performance.md, "by taking parts away")."""
    return min(zlib.MAX_WBITS, max(9, (sample_bytes + _DEFLATE_LOOKAHEAD - 1).bit_length()))
