"""Stamps: a challenge the reader makes itself, so a reveal takes one request
(docs/protocol/access.md, "Stamp: a reveal in one request").

    stamp = "s1." || b64url(secret_id) || "." || decimal(t) || "." || b64url(salt)

`secret_id` is the secret's 16-byte id, `t` the reader's clock (Unix seconds) and `salt` 16
bytes from the reader's CSPRNG. Each stamp has exactly one spelling, so one stamp has one
stamp id (the ticket-id formula over its text): the server records it with the view it buys.
Nothing here reads a clock or draws random bytes; the caller passes them in.
"""

from __future__ import annotations

import dataclasses
import re

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.errors import CryptoError
from atopos.crypto.sizes import SECRET_ID_BYTES, STAMP_SALT_BYTES
from atopos.crypto.tokens import ticket_id_for

__all__ = [
    "MAX_STAMP_TIME",
    "STAMP_FUTURE_SKEW",
    "STAMP_PREFIX",
    "InvalidStamp",
    "Stamp",
    "make_stamp",
    "parse_stamp",
    "stamp_id_for",
]

STAMP_PREFIX = "s1."
# How far ahead of the server's clock a stamp's time may be (seconds).
STAMP_FUTURE_SKEW = 30
# `t` has at most 12 decimal digits.
MAX_STAMP_TIME = 10**12 - 1
# Both base64url parts are 22 characters (16 bytes); their canonical spelling (unused trailing
# bits zero) is checked when they are decoded. \A and \Z: `$` would also allow a final "\n".
_SPELLING = re.compile(
    r"\As1\.([A-Za-z0-9_-]{22})\.(0|[1-9][0-9]{0,11})\.([A-Za-z0-9_-]{22})\Z", re.ASCII
)


class InvalidStamp(CryptoError):
    """A text that is not a stamp in its one canonical spelling."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stamp:
    secret_id: bytes
    t: int
    salt: bytes


def parse_stamp(text: str) -> Stamp:
    """The fields of a stamp; InvalidStamp for any spelling but the canonical one."""
    match = _SPELLING.match(text)
    if match is None:
        raise InvalidStamp("not a stamp")
    secret_text, time_text, salt_text = match.groups()
    try:
        secret_id = b64url_decode(secret_text)
        salt = b64url_decode(salt_text)
    except ValueError:
        raise InvalidStamp("non-canonical base64url in a stamp") from None
    return Stamp(secret_id, int(time_text), salt)


def make_stamp(secret_id: bytes, t: int, salt: bytes) -> str:
    """The stamp for a secret id, a time (Unix seconds, the reader's clock) and a fresh salt
    (16 bytes from a CSPRNG); ValueError for fields a stamp cannot carry."""
    if len(secret_id) != SECRET_ID_BYTES:
        raise ValueError(f"a secret id is {SECRET_ID_BYTES} bytes")
    if len(salt) != STAMP_SALT_BYTES:
        raise ValueError(f"a stamp's salt is {STAMP_SALT_BYTES} bytes")
    if isinstance(t, bool) or not 0 <= t <= MAX_STAMP_TIME:
        raise ValueError("a stamp's time is a whole number of seconds from 0 to 10**12 - 1")
    return f"{STAMP_PREFIX}{b64url_encode(secret_id)}.{t:d}.{b64url_encode(salt)}"


def stamp_id_for(stamp: str) -> bytes:
    """The id recorded with the view a stamp buys: the ticket-id formula over the stamp's
    text. A challenge token has no dots, so a stamp and a challenge never share an id."""
    return ticket_id_for(stamp)
