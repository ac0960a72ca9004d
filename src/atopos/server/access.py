"""The access path: challenge -> proof of work -> single-use ticket (docs/protocol/access.md).

Challenges are stateless: signed, bound to one secret, short-lived, each with a random salt.
The ticket minted from a challenge has an id derived from that challenge, and the storage
records every redeemed ticket id until it expires, so one proof of work buys one view.
A stamp is a challenge the reader made itself (crypto/stamps.py): checked here against the
window and the difficulty a challenge would have now, its id is recorded the same way.
"""

from __future__ import annotations

import dataclasses
from hmac import compare_digest
from typing import Literal

from atopos.crypto import pow as proof_of_work
from atopos.crypto.sizes import CHALLENGE_SALT_BYTES
from atopos.crypto.stamps import (
    STAMP_FUTURE_SKEW,
    InvalidStamp,
    Stamp,
    parse_stamp,
    stamp_id_for,
)
from atopos.crypto.tokens import (
    InvalidToken,
    Purpose,
    Ticket,
    TokenKeys,
    bound_id_for,
    ticket_id_for,
)
from atopos.errors import MalformedStamp, Refused
from atopos.randomness import RandomBytes
from atopos.server.identity import ClientId
from atopos.server.ratelimit import RateLimits

__all__ = ["AccessControl", "AdmittedStamp", "IssuedChallenge", "IssuedTicket", "StampRefused"]

_MAX_BITS = 40


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedChallenge:
    challenge: str
    bits: int
    expires_at: int


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedTicket:
    ticket: str
    expires_at: int
    # What the ticket carries, for a ticket step that redeems it at once (`reveal`).
    ticket_id: bytes
    remember_until: int


@dataclasses.dataclass(frozen=True, slots=True)
class StampRefused:
    """Answer a fresh challenge instead of the stamp: `reason` is "clock" (outside the
    window) or "bits" (less work than a challenge would ask now); nothing is spent."""

    reason: Literal["clock", "bits"]


@dataclasses.dataclass(frozen=True, slots=True)
class AdmittedStamp:
    """A stamp that may buy a view: the id to record with it, and until when."""

    ticket_id: bytes
    remember_until: int


class AccessControl:
    def __init__(
        self,
        keys: TokenKeys,
        limits: RateLimits,
        random_bytes: RandomBytes,
        *,
        pow_bits: int,
        challenge_ttl: int,
        ticket_ttl: int,
    ) -> None:
        self._keys = keys
        self._limits = limits
        self._random_bytes = random_bytes
        self._pow_bits = pow_bits
        self._challenge_ttl = challenge_ttl
        self._ticket_ttl = ticket_ttl

    async def challenge(self, secret_id: bytes, ident: ClientId, now: int) -> IssuedChallenge:
        """A challenge whose ticket views the secret `secret_id`."""
        return await self.challenge_for(Purpose.SECRET_ACCESS, secret_id, ident, now)

    async def challenge_for(
        self, purpose: Purpose, subject: bytes, ident: ClientId, now: int
    ) -> IssuedChallenge:
        """A challenge bound to one purpose and one id (a secret's, a new room's)."""
        bits = await self._bits_for(ident)
        # The lifetime doubles with each extra bit, as the expected work does: a slow
        # client (a browser) that can answer the base challenge in time can answer every
        # harder one in time too, instead of being priced out by failures of others who
        # share its address (a NAT, a Tor exit).
        expires_at = now + (self._challenge_ttl << max(0, bits - self._pow_bits))
        token = self._keys.issue_challenge(
            bound_id_for(purpose, subject),
            expires_at,
            bits,
            self._random_bytes(CHALLENGE_SALT_BYTES),
        )
        return IssuedChallenge(token, bits, expires_at)

    async def _bits_for(self, ident: ClientId) -> int:
        """The work a challenge for `ident` asks now: the base, plus the failure-priced bits."""
        bits = self._pow_bits
        if bits:
            # Difficulty rises for identifiers that recently failed; at 0 bits (tests,
            # benchmarks) the work is switched off entirely.
            bits = min(_MAX_BITS, bits + await self._limits.extra_bits(ident))
        return bits

    async def check_work(
        self,
        purpose: Purpose,
        subject: bytes,
        challenge: str,
        nonce: int,
        ident: ClientId,
        now: int,
    ) -> int:
        """Check a solved challenge of `purpose` for `subject` (no ticket: the work pays for
        the request that carries it); when the challenge expires, Refused otherwise."""
        try:
            opened = self._keys.open_challenge(challenge, bound_id_for(purpose, subject), now)
        except InvalidToken:
            await self._limits.record_failure(ident)
            raise Refused("The challenge is invalid or expired; ask for a new one.") from None
        if not proof_of_work.verify(challenge.encode("ascii"), nonce, opened.bits):
            await self._limits.record_failure(ident)
            raise Refused("The proof of work is wrong.")
        return opened.expires_at

    async def ticket(
        self, secret_id: bytes, challenge: str, nonce: int, ident: ClientId, now: int
    ) -> IssuedTicket:
        try:
            opened = self._keys.open_challenge(challenge, secret_id, now)
        except InvalidToken:
            await self._limits.record_failure(ident)
            raise Refused("The challenge is invalid or expired; ask for a new one.") from None
        if not proof_of_work.verify(challenge.encode("ascii"), nonce, opened.bits):
            await self._limits.record_failure(ident)
            raise Refused("The proof of work is wrong.")
        # Every ticket of this challenge is minted before it expires, so the last of them
        # expires ticket_ttl after it at the latest: the store remembers a redeemed id so long.
        remember_until = opened.expires_at + self._ticket_ttl
        expires_at = min(now + self._ticket_ttl, remember_until)
        ticket_id = ticket_id_for(challenge)
        ticket = self._keys.issue_ticket(secret_id, ticket_id, expires_at, remember_until)
        return IssuedTicket(ticket, expires_at, ticket_id, remember_until)

    async def open_stamp(self, secret_id: bytes, text: str, ident: ClientId) -> Stamp:
        """A stamp's fields (spec step 2): MalformedStamp (422, not counted: a client's bug)
        for any spelling but the canonical one; Refused, counted as a failure, for a stamp
        made for another secret (as a challenge for another secret is)."""
        try:
            stamp = parse_stamp(text)
        except InvalidStamp:
            raise MalformedStamp() from None
        if not compare_digest(stamp.secret_id, secret_id):
            await self._limits.record_failure(ident)
            raise Refused("The stamp was made for another secret.")
        return stamp

    async def stamp(
        self, stamp: Stamp, text: str, nonce: int, ident: ClientId, now: int
    ) -> StampRefused | AdmittedStamp:
        """Whether a stamp (spelled `text`) may buy a view now (spec step 4, after the
        "access" reason its caller checks): its time within [now - challenge_ttl,
        now + STAMP_FUTURE_SKEW], then its work at least the bits a challenge would ask of
        `ident` now. A refusal counts no failure and spends nothing: the reader is answered
        with a challenge."""
        if not now - self._challenge_ttl <= stamp.t <= now + STAMP_FUTURE_SKEW:
            return StampRefused("clock")
        if not proof_of_work.verify(text.encode("ascii"), nonce, await self._bits_for(ident)):
            return StampRefused("bits")
        # A stamp is accepted until t + challenge_ttl: its id is remembered beyond that by a
        # ticket lifetime, a margin for nodes whose clocks differ (as for a ticket's).
        remember_until = stamp.t + self._challenge_ttl + self._ticket_ttl
        return AdmittedStamp(stamp_id_for(text), remember_until)

    async def open_ticket(self, secret_id: bytes, ticket: str, ident: ClientId, now: int) -> Ticket:
        try:
            return self._keys.open_ticket(ticket, secret_id, now)
        except InvalidToken:
            await self._limits.record_failure(ident)
            raise Refused("The ticket is invalid or expired; start the reveal again.") from None

    async def record_failure(self, ident: ClientId) -> None:
        await self._limits.record_failure(ident)
