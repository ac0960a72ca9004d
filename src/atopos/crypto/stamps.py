"""Stamps: a challenge the reader makes itself, so that a reveal is one request
(docs/protocol/access.md, "Stamp: a reveal in one request").

    stamp = "s1." || b64url(secret_id) || "." || decimal(t) || "." || b64url(salt)

`t` is the reader's clock (Unix seconds) and `salt` 16 bytes of its CSPRNG, both handed in:
nothing here reads a clock or draws randomness. The proofs over a stamp are the challenge's
(proof of work, access proof) with the stamp's text in place of the challenge's.
"""

from __future__ import annotations

from atopos.crypto.base64url import b64url_encode
from atopos.crypto.sizes import SECRET_ID_BYTES

__all__ = ["MAX_STAMP_TIME", "STAMP_FUTURE_SKEW", "STAMP_PREFIX", "STAMP_SALT_BYTES", "make_stamp"]

STAMP_PREFIX = "s1."
STAMP_SALT_BYTES = 16
# How far ahead of the server's clock a stamp's time may be (seconds).
STAMP_FUTURE_SKEW = 30
# `t` has 1 to 12 decimal digits.
MAX_STAMP_TIME = 10**12 - 1


def make_stamp(secret_id: bytes, t: int, salt: bytes) -> str:
    """The stamp for `secret_id` at time `t` with `salt`, in its one canonical spelling;
    ValueError for a wrong-sized id or salt, or a time outside 0..MAX_STAMP_TIME."""
    if len(secret_id) != SECRET_ID_BYTES:
        raise ValueError(f"a secret id is {SECRET_ID_BYTES} bytes")
    if len(salt) != STAMP_SALT_BYTES:
        raise ValueError(f"a stamp's salt is {STAMP_SALT_BYTES} bytes")
    if isinstance(t, bool) or not 0 <= t <= MAX_STAMP_TIME:
        raise ValueError("a stamp's time is 0 to 12 decimal digits of Unix seconds")
    return f"{STAMP_PREFIX}{b64url_encode(secret_id)}.{t}.{b64url_encode(salt)}"
