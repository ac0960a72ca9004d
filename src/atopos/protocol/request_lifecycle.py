"""The life of a secret request as one transition table (docs/protocol/requests.md section 6),
in the manner of `secret_lifecycle.py`.

States:

- OPEN: stored, not expired, no secret id: the one state a claim takes.
- FILLING: a claim wrote the id of the secret being uploaded, with a lease
  (`CLAIM_LEASE_SECONDS`); the upload is under way, or its node died.
- FILLED: the upload completed; the record stays until the filled secret's expiry.
- GONE: unknown, expired or swept. One answer for all, as for secrets.

Events are the `RequestStore` operations (OPEN: `create_request`, CLAIM, RELEASE, COMPLETE,
CANCEL: the requester closes a request no fill holds) and time (EXPIRE, and LAPSE: the
clock passes the claim's lease). RELEASE and COMPLETE name
the secret id of their claim; the guard `OWN_CLAIM` holds when it is the one the record
holds, so a late or foreign call changes nothing. The guard `LAPSED_CLAIM` holds when the
claim's lease is over: a new claim then takes the request (a node that died between claim
and complete does not close it until it expires), and the old claim's COMPLETE no longer
matches. Both adapters (`storage/sqlite_requests.py`, `storage/redis_requests.py`) implement
these rows, each event as one atomic step, and `tests/integration/test_request_lifecycle.py`
drives them against `RequestLifecycle`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

__all__ = [
    "ALWAYS",
    "LAPSED_CLAIM",
    "OWN_CLAIM",
    "TRANSITIONS",
    "RequestAnswer",
    "RequestEvent",
    "RequestLifecycle",
    "RequestMove",
    "RequestPhase",
]


class RequestPhase(enum.Enum):
    OPEN = "open"
    FILLING = "filling"
    FILLED = "filled"
    GONE = "gone"


class RequestEvent(enum.Enum):
    OPEN = "open"  # store a new request (create_request)
    CLAIM = "claim"  # take an open request for an upload (claim_request)
    RELEASE = "release"  # the upload failed: open it again (release_request)
    COMPLETE = "complete"  # the upload is stored: filled (complete_request)
    CANCEL = "cancel"  # the requester closes it unfilled (cancel_request)
    EXPIRE = "expire"  # the clock reaches expires_at
    LAPSE = "lapse"  # the clock passes the claim's lease


class RequestAnswer(enum.Enum):
    STORED = "stored"
    CLAIMED = "claimed"
    TAKEN = "taken"  # a claim refused: RequestTaken (404 to a filler)
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclasses.dataclass(frozen=True, slots=True)
class RequestMove:
    """One row: when its guards hold (`needs_own_claim`, `needs_lapsed_claim`), go to
    `target`, answer `answer`."""

    target: RequestPhase
    answer: RequestAnswer
    needs_own_claim: bool = False
    needs_lapsed_claim: bool = False


ALWAYS = False
OWN_CLAIM = True
LAPSED_CLAIM = True
_OPEN, _FILLING, _FILLED, _GONE = (
    RequestPhase.OPEN,
    RequestPhase.FILLING,
    RequestPhase.FILLED,
    RequestPhase.GONE,
)
_STORED, _CLAIMED, _TAKEN = RequestAnswer.STORED, RequestAnswer.CLAIMED, RequestAnswer.TAKEN
_CHANGED, _UNCHANGED = RequestAnswer.CHANGED, RequestAnswer.UNCHANGED

# Rows in order: the first whose guard holds is taken; the last of each entry is ALWAYS.
TRANSITIONS: Mapping[tuple[RequestPhase, RequestEvent], tuple[RequestMove, ...]] = {
    (_GONE, RequestEvent.OPEN): (RequestMove(_OPEN, _STORED),),
    # The one move that decides who fills the request.
    (_OPEN, RequestEvent.CLAIM): (RequestMove(_FILLING, _CLAIMED),),
    (_FILLING, RequestEvent.CLAIM): (
        RequestMove(_FILLING, _CLAIMED, needs_lapsed_claim=LAPSED_CLAIM),
        RequestMove(_FILLING, _TAKEN),
    ),
    (_FILLED, RequestEvent.CLAIM): (RequestMove(_FILLED, _TAKEN),),
    (_GONE, RequestEvent.CLAIM): (RequestMove(_GONE, _TAKEN),),
    (_FILLING, RequestEvent.RELEASE): (
        RequestMove(_OPEN, _CHANGED, needs_own_claim=OWN_CLAIM),
        RequestMove(_FILLING, _UNCHANGED),
    ),
    (_OPEN, RequestEvent.RELEASE): (RequestMove(_OPEN, _UNCHANGED),),
    (_FILLED, RequestEvent.RELEASE): (RequestMove(_FILLED, _UNCHANGED),),
    (_GONE, RequestEvent.RELEASE): (RequestMove(_GONE, _UNCHANGED),),
    (_FILLING, RequestEvent.COMPLETE): (
        RequestMove(_FILLED, _CHANGED, needs_own_claim=OWN_CLAIM),
        RequestMove(_FILLING, _UNCHANGED),
    ),
    (_OPEN, RequestEvent.COMPLETE): (RequestMove(_OPEN, _UNCHANGED),),
    (_FILLED, RequestEvent.COMPLETE): (RequestMove(_FILLED, _UNCHANGED),),
    (_GONE, RequestEvent.COMPLETE): (RequestMove(_GONE, _UNCHANGED),),
    # Atomic against CLAIM: either the cancel forgets the request (a later claim finds it
    # gone) or a claim holds it (the cancel changes nothing; a lapsed claim does not hold).
    (_OPEN, RequestEvent.CANCEL): (RequestMove(_GONE, _CHANGED),),
    (_FILLING, RequestEvent.CANCEL): (
        RequestMove(_GONE, _CHANGED, needs_lapsed_claim=LAPSED_CLAIM),
        RequestMove(_FILLING, _UNCHANGED),
    ),
    (_FILLED, RequestEvent.CANCEL): (RequestMove(_FILLED, _UNCHANGED),),
    (_GONE, RequestEvent.CANCEL): (RequestMove(_GONE, _UNCHANGED),),
    (_OPEN, RequestEvent.EXPIRE): (RequestMove(_GONE, _UNCHANGED),),
    (_FILLING, RequestEvent.EXPIRE): (RequestMove(_GONE, _UNCHANGED),),
    (_FILLED, RequestEvent.EXPIRE): (RequestMove(_GONE, _UNCHANGED),),
    (_GONE, RequestEvent.EXPIRE): (RequestMove(_GONE, _UNCHANGED),),
    # The lease passing changes no phase; it arms the guard of the next CLAIM.
    (_OPEN, RequestEvent.LAPSE): (RequestMove(_OPEN, _UNCHANGED),),
    (_FILLING, RequestEvent.LAPSE): (RequestMove(_FILLING, _UNCHANGED),),
    (_FILLED, RequestEvent.LAPSE): (RequestMove(_FILLED, _UNCHANGED),),
    (_GONE, RequestEvent.LAPSE): (RequestMove(_GONE, _UNCHANGED),),
}


class RequestLifecycle:
    """One request's place in the table: a model for tests and a spec for readers."""

    def __init__(self) -> None:
        self.phase = RequestPhase.GONE
        # The lease of the current claim is over (set by LAPSE, cleared by a new claim).
        self.claim_lapsed = False

    def handle(self, event: RequestEvent, *, is_own_claim: bool = False) -> RequestMove:
        """Take the row for `event`, apply it and return it."""
        for move in TRANSITIONS[(self.phase, event)]:
            if move.needs_own_claim and not is_own_claim:
                continue
            if move.needs_lapsed_claim and not self.claim_lapsed:
                continue
            self.phase = move.target
            if event is RequestEvent.LAPSE:
                self.claim_lapsed = self.phase is RequestPhase.FILLING
            elif move.answer is RequestAnswer.CLAIMED or self.phase is not RequestPhase.FILLING:
                self.claim_lapsed = False
            return move
        raise AssertionError("every entry ends with an ALWAYS row")
