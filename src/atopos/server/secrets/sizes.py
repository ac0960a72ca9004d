"""Size bounds of an acceptable envelope, derived from the envelope format itself."""

from __future__ import annotations

import functools

from atopos.crypto.envelope import Metadata, sealed_size

__all__ = ["max_envelope_bytes", "min_envelope_bytes"]

_MAX_META_BYTES = 4096
_SMALLEST_CHUNK_LOG2 = 10


@functools.cache
def max_envelope_bytes(max_content_bytes: int) -> int:
    """The largest envelope any honest client can make for content of at most this size."""
    return sealed_size(
        Metadata(kind="file", size=max_content_bytes + _MAX_META_BYTES),
        has_passphrase=True,
        is_device_bound=True,
        chunk_size_log2=_SMALLEST_CHUNK_LOG2,
    )


@functools.cache
def min_envelope_bytes() -> int:
    return sealed_size(Metadata(kind="text", size=0))
