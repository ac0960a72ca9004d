"""Strict wire schemas of the secrets API (msgspec: unknown fields and wrong types are 422)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "MAX_BYTES_LIMIT",
    "Argon2Fields",
    "ChallengeResponse",
    "CreateResponse",
    "ReceiptsResponse",
    "RevealRequest",
    "StampRefusal",
    "StampRefusedResponse",
    "StatusResponse",
    "TicketRequest",
    "TicketResponse",
]

# Why a stamp was answered with a challenge (docs/protocol/access.md, "Stamp").
StampRefusal = Literal["access", "clock", "bits"]
_Token = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
# Its spelling is checked after the rate limits (422 invalid_stamp), not by the schema.
_Stamp = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=512,
        description=(
            "s1.{b64url(secret id)}.{t}.{b64url(16-byte salt)} (docs/protocol/access.md, "
            '"Stamp"); instead of challenge, with reveal true and access_proof (signed '
            'under "atopos/stamp-proof/v1", not the challenge label).'
        ),
    ),
]
# The upper bound 2**64 - 1 does not fit msgspec's int64 constraints; TicketRequest checks it.
_Nonce = Annotated[int, msgspec.Meta(ge=0, description="0 <= nonce < 2**64")]
# The largest envelope a client can take as the answer (a mixnet's reply blocks): a larger
# one is answered 413 answer_too_large before the view is spent (docs/protocol/access.md).
MAX_BYTES_LIMIT = 2**40
_MaxBytes = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=MAX_BYTES_LIMIT,
        description="Answer 413 answer_too_large, spending nothing, if the envelope is larger.",
    ),
]


class TicketRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A solved challenge, or a stamp (a challenge the reader made: docs/protocol/access.md,
    "Stamp: a reveal in one request"); exactly one of the two."""

    nonce: _Nonce
    # The server's challenge token (None with a stamp).
    challenge: _Token | None = None
    # base64url Ed25519 signature (86 characters); required for a bound secret, else ignored.
    device_proof: _Token | None = None
    # base64url Ed25519 signature (86 characters) by the secret's access key; required when
    # the secret has one (every secret created since the key-knowledge proof), else ignored.
    access_proof: _Token | None = None
    # True: redeem the ticket at once and answer with the envelope, as the reveal step
    # would (one request fewer for a reader who reveals now; docs/protocol/access.md).
    reveal: bool = False
    # Only with reveal: the largest envelope this client can take (None: any).
    max_bytes: _MaxBytes | None = None
    # "s1.{id}.{t}.{salt}" (crypto/stamps.py), instead of `challenge`: the whole reveal in
    # this request. Requires reveal and access_proof; device_proof is refused with it.
    stamp: _Stamp | None = None

    def __post_init__(self) -> None:
        if self.nonce > 2**64 - 1:
            raise ValueError("nonce must be below 2**64")
        if self.max_bytes is not None and not self.reveal:
            raise ValueError("max_bytes is only allowed with reveal")
        if (self.challenge is None) == (self.stamp is None):
            raise ValueError("exactly one of challenge and stamp is required")
        if self.stamp is not None and not (self.reveal and self.access_proof is not None):
            raise ValueError("a stamp requires reveal true and access_proof")
        if self.stamp is not None and self.device_proof is not None:
            raise ValueError("device_proof is not allowed with a stamp")


class RevealRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ticket: _Token
    # The largest envelope this client can take (None: any), as for TicketRequest.
    max_bytes: _MaxBytes | None = None


class CreateResponse(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    manage_token: str
    expires_at: int


class Argon2Fields(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The envelope header's Argon2id cost and salt (docs/protocol/envelope.md section 2)."""

    memory_kib: int
    iterations: int
    lanes: int
    salt: str  # 16 bytes, unpadded base64url


class ChallengeResponse(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    challenge: str
    bits: int
    expires_at: int
    # True when the ticket step will also want `device_proof` (docs/protocol/device.md).
    is_bound: bool
    # True when the envelope's header says it needs a passphrase: ask before the view.
    has_passphrase: bool
    # True when the ticket step will also want `access_proof` (docs/protocol/access.md).
    has_access_key: bool
    # What the access proof needs besides the link key when there is a passphrase.
    argon2: Argon2Fields | None


class StampRefusedResponse(ChallengeResponse, forbid_unknown_fields=True, frozen=True):
    """The answer to a stamp the server will not take as it is: the challenge step's answer,
    plus why ("access", "clock" or "bits"); nothing was spent."""

    stamp_refused: StampRefusal


class TicketResponse(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ticket: str
    expires_at: int


class StatusResponse(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    views_left: int
    expires_at: int
    created_at: int
    kind: Literal["text", "file"]
    size: int
    is_bound: bool
    # The minute (Unix seconds, a multiple of 60) each view was spent, oldest first.
    viewed_at: list[int]


class ReceiptsResponse(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Reveal receipts: kept after the last view burned the secret, until it expires."""

    views_left: int  # 0 once the last view was spent
    expires_at: int
    viewed_at: list[int]
