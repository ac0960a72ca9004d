"""The server's "looks like ciphertext" check of an upload (server/secrets/uploads.py) gives
the verdict of the documented rule (docs/protocol/access.md): the sample after the header
must not shrink below 0.9 of its length under zlib's fastest level. The check sizes zlib's
window to the sample; these samples sit on both sides of the threshold, with their repeats
as far back as the sample allows, so a window too small to reach them changes a verdict."""

from __future__ import annotations

import random
import zlib

import pytest

from atopos.errors import InvalidInput
from atopos.server.secrets import uploads

_RNG = random.Random(1951)  # reproducible test inputs, not key material
_SIZES = [40, 255, 256, 500, 600, 761, 762, 1000, 4096, 20_000, 32_506, 32_507, 64 * 1024]


def _documented_verdict(sample: bytes) -> bool:
    return len(zlib.compress(sample, 1)) >= 0.9 * len(sample)


def _check_accepts(sample: bytes) -> bool:
    try:
        uploads._check_sample(bytearray(sample))
    except InvalidInput:
        return False
    return True


def _far_repeat(size: int, repeated_share: float) -> bytes:
    """Random bytes whose last `repeated_share` copies their first bytes: every match the
    compressor can use is (almost) the whole sample back."""
    repeated = int(size * repeated_share)
    head = _RNG.randbytes(size - repeated)
    return head + head[:repeated]


@pytest.mark.parametrize("size", _SIZES)
def test_the_verdict_is_the_documented_rules_on_both_sides_of_the_threshold(size: int) -> None:
    verdicts = set()
    for share in (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5):
        sample = _far_repeat(size, share)
        assert _check_accepts(sample) is _documented_verdict(sample), (size, share)
        verdicts.add(_documented_verdict(sample))
    # Past 32,506 bytes the repeats are out of reach of zlib's largest window too.
    if 500 <= size <= 32_506:
        assert verdicts == {True, False}


def test_text_and_zeros_are_refused_and_random_bytes_accepted() -> None:
    text = b"Plain text is never an envelope, however long it goes on. " * 40
    assert not _check_accepts(text)
    assert not _check_accepts(bytes(2000))
    assert _check_accepts(_RNG.randbytes(2000))
