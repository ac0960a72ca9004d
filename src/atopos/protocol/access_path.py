"""The reader's side of the access path (docs/protocol/access.md) as a sans-I/O machine.

challenge → access proof → (device proof) → proof of work → ticket → reveal, or with
`one_shot` a ticket step that reveals at once (`"reveal": true`), or with `stamp` (and
`one_shot`) a stamp the reader makes itself → access proof → proof of work → one request
that reveals (or is answered with a challenge, and the walk goes on from there); in the
manner of h11's `_state.py`: `TRANSITIONS` lists every legal move (state, event, guard →
next state) in one place. The machine is fed events (the server's answers, the time and
salt of a stamp, a solved proof of work, a device proof, a finished wait) and answers with
the next thing to do: a request to send, work to do (`MakeStamp`, `MakeStampProof`,
`MakeAccessProof`, `SolveProofOfWork`, `MakeDeviceProof`, `Wait`), or a terminal outcome
(`Revealed`: the reveal answer carries the envelope; `Failed`: a `Failure`, which the
client raises as the matching Atopos error). It sends nothing, solves nothing, reads no
clock, draws nothing and sleeps nowhere: the drivers (`client/secrets.py`, sync and async)
do, so one request-building path serves both, and `tests/vectors/access_path.json` replays
it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import TypeVar

import msgspec

from atopos.crypto.base64url import b64url_decode, b64url_encode
from atopos.crypto.stamps import make_stamp
from atopos.protocol.answers import Failure, FailureKind, ServerAnswer, failure_for_answer

__all__ = [
    "CHALLENGE_REFUSED",
    "DEFAULT_STAMP_BITS",
    "NEEDS_PASSPHRASE",
    "NO_DEVICE",
    "REVEAL_REFUSED",
    "STAMP_REFUSED",
    "STAMP_TIME_STEP",
    "TICKET_REFUSED",
    "TOO_MUCH_WORK",
    "TRANSITIONS",
    "WRONG_DEVICE",
    "AccessPath",
    "AccessPathMisuse",
    "AccessProofMade",
    "Argon2Fields",
    "Challenge",
    "DeviceProofMade",
    "Event",
    "Failed",
    "Guard",
    "MakeAccessProof",
    "MakeDeviceProof",
    "MakeStamp",
    "MakeStampProof",
    "ProofOfWorkFound",
    "Revealed",
    "SendRequest",
    "ServerAnswered",
    "SolveProofOfWork",
    "StampMade",
    "State",
    "Step",
    "Ticket",
    "Wait",
    "Waited",
]

_API = "/api/v1/secrets"
_UNPROCESSABLE = 422
_TOO_LARGE = 413
_T = TypeVar("_T")
CHALLENGE_REFUSED = "The server refused to hand out a challenge."
TICKET_REFUSED = "The server refused the proof of work (the challenge may have expired)."
REVEAL_REFUSED = "The access ticket was refused (expired or already used)."
STAMP_REFUSED = "The server refused the stamp (it was already used)."
# The proof of work a stamp is solved at when this server has asked nothing of this reader
# yet: the default `--pow-bits`.
DEFAULT_STAMP_BITS = 16
# A stamp's time is the reader's clock rounded down to a multiple of this many seconds, so
# that it does not tell the reader's clock offset to the second (a linking signal over Tor
# and the mixnet); the server's window is unchanged, so a rounded stamp is accepted.
STAMP_TIME_STEP = 60
# A server's challenge is opaque but always base64url: anything else (a stamp's dots, say)
# is an answer not understood, and nothing is signed or solved over it. A relay could
# otherwise hand the reader a future stamp to sign and solve as "a challenge".
_CHALLENGE_TEXT = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
TOO_MUCH_WORK = "The server demands more proof of work than this client will do."
NEEDS_PASSPHRASE = "This secret needs its passphrase."  # noqa: S105 (a sentence)
WRONG_DEVICE = "This secret is bound to another device; it can only be revealed there."
NO_DEVICE = (
    "This secret is bound to a device and this machine has none; "
    "it can only be revealed on that device."
)


# -- what the server answers (also the schemas its JSON is decoded into) ------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Argon2Fields:
    """The envelope header's Argon2id cost and salt (base64url), as the challenge carries
    them: what an access proof needs besides the link key when there is a passphrase."""

    memory_kib: int
    iterations: int
    lanes: int
    salt: str


@dataclasses.dataclass(frozen=True, slots=True)
class Challenge:
    """A proof-of-work challenge bound to one secret id; `is_bound` when the ticket step
    will also want a device proof, `has_access_key` when it will want an access proof,
    `has_passphrase` when the envelope (and so the access proof) needs a passphrase."""

    challenge: str
    bits: int
    expires_at: int
    is_bound: bool = False  # servers before device binding do not send it
    has_passphrase: bool = False  # nor this, before the passphrase hint
    has_access_key: bool = False  # nor these two, before the key-knowledge proof
    argon2: Argon2Fields | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    """A short-lived, single-use permission to reveal one view."""

    ticket: str = dataclasses.field(repr=False)
    expires_at: int


class _StampRefusal(msgspec.Struct, frozen=True):
    """What marks a challenge answer to a stamp: the reason the server did not take it."""

    stamp_refused: str


class _AnswerTooLarge(msgspec.Struct, frozen=True):
    """The body of a 413 `answer_too_large`: the envelope's size."""

    error: str
    size: int = 0


# -- events (fed to the machine) ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StampMade:
    """The answer to `MakeStamp`: the reader's clock (integer Unix seconds; the machine
    rounds it down to `STAMP_TIME_STEP`) and 16 bytes from its CSPRNG."""

    now: int
    salt: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerAnswered:
    """The answer to the last `SendRequest`."""

    answer: ServerAnswer


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceProofMade:
    """The answer to `MakeDeviceProof`: the signature, or None when this machine has no
    device (the request is made anyway: the server decides, and counts the failure)."""

    proof: bytes | None


@dataclasses.dataclass(frozen=True, slots=True)
class AccessProofMade:
    """The answer to `MakeAccessProof`: the 64-byte signature."""

    proof: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class ProofOfWorkFound:
    """The answer to `SolveProofOfWork`."""

    nonce: int


@dataclasses.dataclass(frozen=True, slots=True)
class Waited:
    """The `Wait` a 429 asked for is over."""


Event = ServerAnswered | StampMade | AccessProofMade | DeviceProofMade | ProofOfWorkFound | Waited


# -- steps (what the machine asks the driver to do next) ----------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SendRequest:
    """Send `method path` with `json` as body (None: no body). When `is_reveal`, a
    successful answer's body may be the envelope: stream it (and feed the answer with body
    None) unless its media type is `application/json`; read any other answer (bounded)."""

    method: str
    path: str
    json: dict[str, object] | None = dataclasses.field(default=None, repr=False)
    is_reveal: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class MakeStamp:
    """Read the clock (integer Unix seconds) and draw 16 random bytes, then feed
    `StampMade`: the machine makes the stamp of them."""


@dataclasses.dataclass(frozen=True, slots=True)
class MakeStampProof:
    """Sign `stamp` for `secret_id` with the access key derived from the link key alone,
    under the stamp's own label (docs/protocol/access.md, "Stamp: a reveal in one request"),
    then feed `AccessProofMade`."""

    secret_id: str
    stamp: str


@dataclasses.dataclass(frozen=True, slots=True)
class MakeAccessProof:
    """Sign `challenge` for `secret_id` with the access key derived from the link key and,
    when `argon2` is given, the passphrase stretched with it (docs/protocol/access.md)."""

    secret_id: str
    challenge: str
    argon2: Argon2Fields | None


@dataclasses.dataclass(frozen=True, slots=True)
class MakeDeviceProof:
    """Sign `challenge` for `secret_id` with this machine's device key (docs/protocol/device.md)."""

    secret_id: str
    challenge: str


@dataclasses.dataclass(frozen=True, slots=True)
class SolveProofOfWork:
    """Find a nonce for `challenge` (UTF-8) at `bits` difficulty (crypto/pow.py)."""

    challenge: bytes
    bits: int


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Wait `seconds` (a 429's `Retry-After`), then feed `Waited`."""

    seconds: int


@dataclasses.dataclass(frozen=True, slots=True)
class Revealed:
    """Terminal: the reveal answer is a success; its body is the envelope (one view spent)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """Terminal: the walk failed (the client raises the matching error)."""

    failure: Failure


Step = (
    SendRequest
    | MakeStamp
    | MakeStampProof
    | MakeAccessProof
    | MakeDeviceProof
    | SolveProofOfWork
    | Wait
    | Revealed
    | Failed
)


# -- the table ----------------------------------------------------------------------------


class State(enum.Enum):
    MAKING_STAMP = "making stamp"
    MAKING_STAMP_PROOF = "making access proof over the stamp"
    SOLVING_STAMP = "solving the stamp's proof of work"
    AWAITING_STAMP_ANSWER = "awaiting stamp answer"
    AWAITING_CHALLENGE = "awaiting challenge"
    MAKING_ACCESS_PROOF = "making access proof"
    MAKING_DEVICE_PROOF = "making device proof"
    SOLVING = "solving proof of work"
    AWAITING_TICKET = "awaiting ticket"
    AWAITING_REVEAL = "awaiting reveal"
    WAITING = "waiting out a rate limit"
    REVEALED = "revealed"
    FAILED = "failed"


class Guard(enum.Enum):
    """What an event turned out to be; `ANY` for events that carry no choice."""

    ANY = "any"
    OK = "ok"
    OK_BOUND = "ok, bound to a device"
    OK_KEYED = "ok, the secret wants an access proof"
    OK_REVEALED = "ok, and the ticket step revealed the envelope"
    OLDER_SERVER = "422 to a ticket step with reveal: a server without it"
    STAMP_UNKNOWN = "422 to a stamp: a server without stamps"
    STAMPING = "the walk is still a stamp's (no challenge was asked for or given)"
    PASSPHRASE_MISSING = "ok, but a passphrase is needed and none can be had"  # noqa: S105
    TOO_MUCH_WORK = "ok, but more bits than this client will solve"
    RATE_LIMITED_RETRY = "429, retries left and Retry-After short enough"
    ERROR = "any other failure (status or unreadable answer)"


_S = State
_G = Guard
TRANSITIONS: dict[tuple[State, type[Event], Guard], State] = {
    (_S.MAKING_STAMP, StampMade, _G.ANY): _S.MAKING_STAMP_PROOF,
    (_S.MAKING_STAMP_PROOF, AccessProofMade, _G.ANY): _S.SOLVING_STAMP,
    (_S.SOLVING_STAMP, ProofOfWorkFound, _G.ANY): _S.AWAITING_STAMP_ANSWER,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.OK_REVEALED): _S.REVEALED,
    # Answered with a challenge (`stamp_refused`): on as after "awaiting challenge".
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.OK): _S.SOLVING,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.OK_BOUND): _S.MAKING_DEVICE_PROOF,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.OK_KEYED): _S.MAKING_ACCESS_PROOF,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.PASSPHRASE_MISSING): _S.FAILED,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.TOO_MUCH_WORK): _S.FAILED,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.STAMP_UNKNOWN): _S.AWAITING_CHALLENGE,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.RATE_LIMITED_RETRY): _S.WAITING,
    (_S.AWAITING_STAMP_ANSWER, ServerAnswered, _G.ERROR): _S.FAILED,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.OK): _S.SOLVING,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.OK_BOUND): _S.MAKING_DEVICE_PROOF,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.OK_KEYED): _S.MAKING_ACCESS_PROOF,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.PASSPHRASE_MISSING): _S.FAILED,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.TOO_MUCH_WORK): _S.FAILED,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.RATE_LIMITED_RETRY): _S.WAITING,
    (_S.AWAITING_CHALLENGE, ServerAnswered, _G.ERROR): _S.FAILED,
    (_S.MAKING_ACCESS_PROOF, AccessProofMade, _G.ANY): _S.SOLVING,
    (_S.MAKING_ACCESS_PROOF, AccessProofMade, _G.OK_BOUND): _S.MAKING_DEVICE_PROOF,
    (_S.MAKING_DEVICE_PROOF, DeviceProofMade, _G.ANY): _S.SOLVING,
    (_S.SOLVING, ProofOfWorkFound, _G.ANY): _S.AWAITING_TICKET,
    (_S.AWAITING_TICKET, ServerAnswered, _G.OK): _S.AWAITING_REVEAL,
    (_S.AWAITING_TICKET, ServerAnswered, _G.OK_REVEALED): _S.REVEALED,
    (_S.AWAITING_TICKET, ServerAnswered, _G.OLDER_SERVER): _S.AWAITING_TICKET,
    (_S.AWAITING_TICKET, ServerAnswered, _G.RATE_LIMITED_RETRY): _S.WAITING,
    (_S.AWAITING_TICKET, ServerAnswered, _G.ERROR): _S.FAILED,
    (_S.AWAITING_REVEAL, ServerAnswered, _G.OK): _S.REVEALED,
    (_S.AWAITING_REVEAL, ServerAnswered, _G.RATE_LIMITED_RETRY): _S.WAITING,
    (_S.AWAITING_REVEAL, ServerAnswered, _G.ERROR): _S.FAILED,
    (_S.WAITING, Waited, _G.ANY): _S.AWAITING_CHALLENGE,
    (_S.WAITING, Waited, _G.STAMPING): _S.MAKING_STAMP,
}


class AccessPathMisuse(RuntimeError):
    """The driver fed an event the current state has no move for (a bug of the driver)."""


class AccessPath:
    """One reader's walk to one view of `secret_id` (canonical form; the caller checks it).

    `can_unlock`: a passphrase is given or can be asked for (else a passphrase secret fails
    before any work). A 429 at any step is waited out (`Retry-After`, at most
    `max_retry_wait` seconds) and the walk starts again from the challenge, up to
    `rate_limit_retries` times. `server` only names the server in error sentences.
    `one_shot` (the default): the ticket request asks for the envelope at once (one
    request fewer; False walks the three requests from the start); a server that answers
    it 422 (one from before) is asked again for the ticket alone, and one that answers it
    with a ticket (it ignored the field) is asked the reveal step.

    `stamp` (the default; only with `one_shot`): the walk starts with a stamp
    (docs/protocol/access.md, "Stamp: a reveal in one request"): the driver supplies the
    time and 16 random bytes (`MakeStamp`), the access proof is made from the link key alone
    and the work solved at `assumed_bits` (the bits this server last asked of this reader,
    else `DEFAULT_STAMP_BITS`); one request then reveals. A server that answers it with a
    challenge (`stamp_refused`) is walked on from that challenge; one that answers 422 (one
    from before stamps) is asked for a challenge. No stamp is made when `assumed_bits` is
    over `max_pow_bits` (the ceiling a challenge is held to).
    """

    def __init__(
        self,
        secret_id: str,
        *,
        server: str,
        can_unlock: bool,
        max_pow_bits: int,
        rate_limit_retries: int = 3,
        max_retry_wait: int = 60,
        one_shot: bool = True,
        max_answer_bytes: int | None = None,
        stamp: bool = True,
        assumed_bits: int = DEFAULT_STAMP_BITS,
    ) -> None:
        if assumed_bits < 0:
            raise ValueError("assumed_bits must not be negative")
        self.secret_id = secret_id
        self._max_answer_bytes = max_answer_bytes
        self._one_shot = one_shot
        self._nonce = 0
        self._stamp_bits = assumed_bits
        self._stamp: str | None = None
        stamping = stamp and one_shot and assumed_bits <= max_pow_bits
        self.state = State.MAKING_STAMP if stamping else State.AWAITING_CHALLENGE
        # A stamp walk until the server answers with a challenge or says it has no stamps:
        # a 429 before that starts again with a new stamp, after it with a challenge.
        self._stamping = stamping
        #: Why the server answered the stamp with a challenge (`access`, `clock`, `bits`,
        #: or a reason of a later version), or None.
        self.stamp_refused: str | None = None
        self._server = server
        self._can_unlock = can_unlock
        self._max_pow_bits = max_pow_bits
        self._retries_left = rate_limit_retries
        self._max_retry_wait = max_retry_wait
        self._challenge: Challenge | None = None
        self._device_proof: bytes | None = None
        self._access_proof: bytes | None = None
        self._ticket_refused = TICKET_REFUSED

    @property
    def challenge(self) -> Challenge | None:
        """The last challenge the server handed out on this walk, or None."""
        return self._challenge

    def start(self) -> Step:
        """The first step: make a stamp, or ask for a challenge."""
        if self.state is State.MAKING_STAMP:
            return MakeStamp()
        return self._challenge_request()

    def receive(self, event: Event) -> Step:
        """Move on `event` (see `TRANSITIONS`) and say what to do next."""
        if not any(move[:2] == (self.state, type(event)) for move in TRANSITIONS):
            raise AccessPathMisuse(f"no move from {self.state.value} on {type(event).__name__}")
        guard, step = self._judge(event)
        key = (self.state, type(event), guard)
        if key not in TRANSITIONS:
            raise AccessPathMisuse(f"no move from {self.state.value} on {type(event).__name__}")
        self.state = TRANSITIONS[key]
        return step

    # Each branch below returns the guard it found and the step of the state it leads to.

    def _judge(self, event: Event) -> tuple[Guard, Step]:
        if isinstance(event, ServerAnswered):
            return self._judge_answer(event.answer)
        if isinstance(event, StampMade):
            # Rounded down to the minute: the stamp does not show the clock to the second.
            if isinstance(event.now, bool):
                raise AccessPathMisuse("no stamp of that: the time is not a number")
            t = event.now - event.now % STAMP_TIME_STEP
            try:
                self._stamp = make_stamp(b64url_decode(self.secret_id), t, event.salt)
            except ValueError as exc:
                raise AccessPathMisuse(f"no stamp of that: {exc}") from None
            # From the link key alone: no passphrase is known to be needed (a secret with
            # one is answered with a challenge that says so).
            return Guard.ANY, MakeStampProof(self.secret_id, self._stamp)
        if isinstance(event, AccessProofMade) and self.state is State.MAKING_STAMP_PROOF:
            self._access_proof = event.proof
            return Guard.ANY, SolveProofOfWork(self._current_stamp().encode(), self._stamp_bits)
        if isinstance(event, ProofOfWorkFound) and self.state is State.SOLVING_STAMP:
            return Guard.ANY, self._stamp_request(event.nonce)
        if isinstance(event, AccessProofMade):
            self._access_proof = event.proof
            guard, step = self._after_access_proof()
            return (Guard.ANY if guard is Guard.OK else guard), step
        if isinstance(event, DeviceProofMade):
            self._device_proof = event.proof
            self._ticket_refused = NO_DEVICE if event.proof is None else WRONG_DEVICE
            return Guard.ANY, self._solve()
        if isinstance(event, ProofOfWorkFound):
            return Guard.ANY, self._ticket_request(event.nonce)
        if self._stamping:
            return Guard.STAMPING, MakeStamp()
        return Guard.ANY, self._challenge_request()

    def _judge_answer(self, answer: ServerAnswer) -> tuple[Guard, Step]:
        refused = {
            State.AWAITING_CHALLENGE: CHALLENGE_REFUSED,
            State.AWAITING_TICKET: self._ticket_refused,
            State.AWAITING_STAMP_ANSWER: STAMP_REFUSED,
        }.get(self.state, REVEAL_REFUSED)
        if self.state is State.AWAITING_STAMP_ANSWER and answer.status == _UNPROCESSABLE:
            # A server without stamps (strict schema) spent nothing: the challenge walk.
            self._stamping = False
            return Guard.STAMP_UNKNOWN, self._challenge_request()
        if (
            self._one_shot
            and self.state is State.AWAITING_TICKET
            and answer.status == _UNPROCESSABLE
        ):
            # Nothing was spent: the server refused the unknown field before any check.
            self._one_shot = False
            return Guard.OLDER_SERVER, self._ticket_request(self._nonce)
        if answer.status == _TOO_LARGE and self._max_answer_bytes is not None:
            too_large = self._answer_too_large(answer)
            if too_large is not None:
                return Guard.ERROR, too_large
        if not answer.is_success:
            failure = failure_for_answer(answer, refused=refused)
            if (
                failure.kind is FailureKind.RATE_LIMITED
                and failure.retry_after is not None
                and self._retries_left > 0
                and failure.retry_after <= self._max_retry_wait
            ):
                self._retries_left -= 1
                return Guard.RATE_LIMITED_RETRY, Wait(failure.retry_after)
            return Guard.ERROR, Failed(failure)
        if self.state is State.AWAITING_CHALLENGE:
            return self._judge_challenge(answer)
        if self.state is State.AWAITING_STAMP_ANSWER:
            return self._judge_stamp_answer(answer)
        if self.state is State.AWAITING_TICKET and self._one_shot and answer.body is None:
            return Guard.OK_REVEALED, Revealed()
        if self.state is State.AWAITING_TICKET:
            # Without one shot, or a one-shot step answered with a ticket (JSON, read by the
            # driver) by a server that ignored `reveal`: the two-step way from here on.
            self._one_shot = False
            ticket = self._decode(answer, Ticket)
            if ticket is None:
                return Guard.ERROR, self._not_understood()
            body: dict[str, object] = {"ticket": ticket.ticket}
            if self._max_answer_bytes is not None:
                body["max_bytes"] = self._max_answer_bytes
            return Guard.OK, SendRequest("POST", self._path("reveal"), body, is_reveal=True)
        if answer.body is not None:
            # A body the driver read is JSON, not the envelope stream.
            return Guard.ERROR, self._not_understood()
        return Guard.OK, Revealed()

    def _judge_stamp_answer(self, answer: ServerAnswer) -> tuple[Guard, Step]:
        if answer.body is None:
            return Guard.OK_REVEALED, Revealed()
        refusal = self._decode(answer, _StampRefusal)
        if refusal is None:
            return Guard.ERROR, self._not_understood()
        # The challenge step's answer, as if it had been asked for.
        self.stamp_refused = refusal.stamp_refused
        self._stamping = False
        return self._judge_challenge(answer)

    def _judge_challenge(self, answer: ServerAnswer) -> tuple[Guard, Step]:
        challenge = self._decode(answer, Challenge)
        if (
            challenge is None
            or _CHALLENGE_TEXT.fullmatch(challenge.challenge) is None
            or challenge.bits < 0
        ):
            return Guard.ERROR, self._not_understood()
        self._challenge = challenge
        self._device_proof = None
        self._access_proof = None
        self._ticket_refused = TICKET_REFUSED
        if challenge.has_passphrase and not self._can_unlock:
            # Said before any view is spent: without a passphrase the view would be wasted.
            failed = _failed(FailureKind.PASSPHRASE_REQUIRED, NEEDS_PASSPHRASE)
            return Guard.PASSPHRASE_MISSING, failed
        if challenge.bits > self._max_pow_bits:
            return Guard.TOO_MUCH_WORK, _failed(FailureKind.REFUSED, TOO_MUCH_WORK)
        if challenge.has_access_key:
            if challenge.has_passphrase and challenge.argon2 is None:
                return Guard.ERROR, self._not_understood()
            # First, like the device proof: deriving the key (Argon2id, perhaps asking for
            # the passphrase) must not age a solved challenge.
            argon2 = challenge.argon2 if challenge.has_passphrase else None
            return Guard.OK_KEYED, MakeAccessProof(self.secret_id, challenge.challenge, argon2)
        return self._after_access_proof()

    def _after_access_proof(self) -> tuple[Guard, Step]:
        challenge = self._current_challenge()
        if challenge.is_bound:
            # The device proof comes before the work, so that loading the device (perhaps
            # asking for its Extra Lock passphrase) does not age the solved challenge.
            return Guard.OK_BOUND, MakeDeviceProof(self.secret_id, challenge.challenge)
        return Guard.OK, self._solve()

    def _solve(self) -> SolveProofOfWork:
        challenge = self._current_challenge()
        return SolveProofOfWork(challenge.challenge.encode("utf-8"), challenge.bits)

    def _stamp_request(self, nonce: int) -> SendRequest:
        body: dict[str, object] = {
            "stamp": self._current_stamp(),
            "nonce": nonce,
            "access_proof": b64url_encode(self._current_access_proof()),
            "reveal": True,
        }
        if self._max_answer_bytes is not None:
            body["max_bytes"] = self._max_answer_bytes
        return SendRequest("POST", self._path("ticket"), body, is_reveal=True)

    def _challenge_request(self) -> SendRequest:
        return SendRequest("POST", self._path("challenge"))

    def _ticket_request(self, nonce: int) -> SendRequest:
        self._nonce = nonce
        body: dict[str, object] = {"challenge": self._current_challenge().challenge, "nonce": nonce}
        if self._access_proof is not None:
            body["access_proof"] = b64url_encode(self._access_proof)
        if self._device_proof is not None:
            body["device_proof"] = b64url_encode(self._device_proof)
        if self._one_shot:
            body["reveal"] = True
            if self._max_answer_bytes is not None:
                body["max_bytes"] = self._max_answer_bytes
            return SendRequest("POST", self._path("ticket"), body, is_reveal=True)
        return SendRequest("POST", self._path("ticket"), body)

    def _answer_too_large(self, answer: ServerAnswer) -> Failed | None:
        """The failure of a 413 `answer_too_large` (the envelope is over `max_bytes`; the
        server spent nothing), or None for any other 413."""
        refusal = self._decode(answer, _AnswerTooLarge)
        if refusal is None or refusal.error != "answer_too_large":
            return None
        limit = self._max_answer_bytes
        return Failed(
            Failure(
                FailureKind.TOO_LARGE,
                f"This secret is {refusal.size} bytes, more than the {limit} bytes an "
                "answer can carry on this connection; no view was spent.",
                size=refusal.size,
                limit=limit,
            )
        )

    def _current_stamp(self) -> str:
        if self._stamp is None:
            raise AccessPathMisuse("no stamp yet")
        return self._stamp

    def _current_access_proof(self) -> bytes:
        if self._access_proof is None:
            raise AccessPathMisuse("no access proof yet")
        return self._access_proof

    def _current_challenge(self) -> Challenge:
        if self._challenge is None:
            raise AccessPathMisuse("no challenge yet")
        return self._challenge

    def _path(self, step: str) -> str:
        return f"{_API}/{self.secret_id}/{step}"

    def _decode(self, answer: ServerAnswer, schema: type[_T]) -> _T | None:
        if answer.body is None:
            return None
        try:
            return msgspec.json.decode(answer.body, type=schema)
        except (msgspec.DecodeError, RecursionError):  # nesting past the parser's depth
            return None

    def _not_understood(self) -> Failed:
        return _failed(
            FailureKind.NETWORK,
            f"The server at {self._server} sent an answer Atopos does not understand.",
        )


def _failed(kind: FailureKind, message: str) -> Failed:
    return Failed(Failure(kind, message))
