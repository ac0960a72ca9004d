"""The secret lifecycle as one transition table, in the manner of h11's `_state.py`.

Every legal move of a stored secret is one row of `TRANSITIONS`: in a state, on an event,
the first row whose guard holds names the next state, the answer and its effects. Both
storage adapters (`storage/sqlite.py`, `storage/redis.py` with `storage/redis_scripts.py`)
implement these rows, each operation as one atomic step, and the stateful tests
(tests/integration/test_lifecycle_stateful.py) use `SecretLifecycle` as their model.

States:

- LIVE: stored, at least one view left, before `expires_at`. The only state that gives
  anything (a body, metadata, a challenge).
- EXPIRED: still stored, but the clock reached `expires_at`. Gives nothing; a sweep (SQLite)
  or the key's own TTL (Redis) forgets it, a delete burns it at once.
- GONE: nothing stored under the id: burned by its last view, deleted, swept, or never
  created (a fresh id is GONE until CREATE; ids are 128 random bits, so CREATE never meets a
  stored one). One answer for all of these, so no reply tells them apart.

Events are the storage port's operations (CREATE, READ, CONSUME, DELETE, SWEEP), the manage
request's gate (MANAGE: the API checks the manage token against a READ before a status or a
delete) and time (EXPIRE: the clock reaching `expires_at`; adapters apply it by comparing
`expires_at` with `now` in every operation, Redis also with a native TTL).

Guards read `Facts`: how many views are left, whether the ticket id was redeemed before,
whether the manage token matches. The ticket guard comes first in every state, so a
replayed ticket is refused as replayed even after the secret is gone. The one exception is
the ticket that took the last view: it is not recorded, since nothing is left for it to buy
(a burn writes fewer pages), so a replay of it finds the secret gone.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping

__all__ = [
    "ALWAYS",
    "LAST_VIEW",
    "TICKET_REDEEMED",
    "TOKEN_RIGHT",
    "TRANSITIONS",
    "UNREACHABLE",
    "Answer",
    "Event",
    "Facts",
    "Guard",
    "ImpossibleMove",
    "Move",
    "SecretLifecycle",
    "SecretState",
    "next_move",
]


class SecretState(enum.Enum):
    LIVE = "live"
    EXPIRED = "expired"
    GONE = "gone"


class Event(enum.Enum):
    CREATE = "create"  # store a new secret (SecretStore.create)
    READ = "read"  # metadata for a challenge, a ticket or a status (SecretStore.info)
    MANAGE = "manage"  # a status or delete request shows its manage token (API gate)
    CONSUME = "consume"  # redeem a ticket id and take one view (SecretStore.consume)
    DELETE = "delete"  # burn now, after MANAGE allowed it (SecretStore.delete)
    EXPIRE = "expire"  # the clock reaches expires_at (no operation: time passing)
    SWEEP = "sweep"  # forget what expired (SecretStore.sweep; Redis: the key's TTL)


class Answer(enum.Enum):
    STORED = "stored"  # create: durable, 201
    INFO = "info"  # read: the metadata
    ALLOWED = "allowed"  # manage: the token matches, go on
    BODY = "body"  # consume: the ciphertext, one view taken
    BURNED = "burned"  # delete (True), sweep (counted)
    TICKET_USED = "ticket-used"  # consume with a redeemed ticket id: refused (403)
    REFUSED = "refused"  # manage with a wrong token (403)
    GONE = "gone"  # nothing to give (404; info None, delete False)
    NOTHING = "nothing"  # no answer: time passing, a sweep that leaves the secret be


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What the guards may look at, besides the state."""

    views_left: int = 0
    is_ticket_redeemed: bool = False
    is_token_right: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """A named condition on `Facts`; the name is what a reader (and a failing test) sees."""

    name: str
    holds: Callable[[Facts], bool] = dataclasses.field(compare=False)

    def __repr__(self) -> str:
        return self.name


ALWAYS = Guard("always", lambda facts: True)
TICKET_REDEEMED = Guard("ticket id redeemed before", lambda facts: facts.is_ticket_redeemed)
LAST_VIEW = Guard("views_left == 1", lambda facts: facts.views_left == 1)
TOKEN_RIGHT = Guard("manage token matches", lambda facts: facts.is_token_right)


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    """One row: when `guard` holds, go to `target` and answer `answer`.

    `takes_view` decrements views_left and records the minute as a reveal receipt (kept,
    without the secret, until its expiry: storage/port.py `Receipts`); `redeems_ticket`
    records the ticket id as used (until the ticket's remember_until; SQLite forgets it in a
    later sweep, Redis by TTL): every view but the last, which leaves nothing to buy.
    """

    guard: Guard
    target: SecretState
    answer: Answer
    takes_view: bool = False
    redeems_ticket: bool = False


_LIVE, _EXPIRED, _GONE = SecretState.LIVE, SecretState.EXPIRED, SecretState.GONE

# Rows in order: the first whose guard holds is taken; the last of each entry is ALWAYS.
TRANSITIONS: Mapping[tuple[SecretState, Event], tuple[Move, ...]] = {
    (_GONE, Event.CREATE): (Move(ALWAYS, _LIVE, Answer.STORED),),
    # -- live ---------------------------------------------------------------------------
    (_LIVE, Event.READ): (Move(ALWAYS, _LIVE, Answer.INFO),),
    (_LIVE, Event.MANAGE): (
        Move(TOKEN_RIGHT, _LIVE, Answer.ALLOWED),
        Move(ALWAYS, _LIVE, Answer.REFUSED),
    ),
    (_LIVE, Event.CONSUME): (
        Move(TICKET_REDEEMED, _LIVE, Answer.TICKET_USED),
        # The last view burns the secret in the same atomic step that hands it out; its
        # ticket id needs no record, as nothing is left for it to buy.
        Move(LAST_VIEW, _GONE, Answer.BODY, takes_view=True),
        Move(ALWAYS, _LIVE, Answer.BODY, takes_view=True, redeems_ticket=True),
    ),
    (_LIVE, Event.DELETE): (Move(ALWAYS, _GONE, Answer.BURNED),),
    (_LIVE, Event.EXPIRE): (Move(ALWAYS, _EXPIRED, Answer.NOTHING),),
    (_LIVE, Event.SWEEP): (Move(ALWAYS, _LIVE, Answer.NOTHING),),
    # -- expired: stored, gives nothing -----------------------------------------------------
    (_EXPIRED, Event.READ): (Move(ALWAYS, _EXPIRED, Answer.GONE),),
    (_EXPIRED, Event.MANAGE): (Move(ALWAYS, _EXPIRED, Answer.GONE),),
    (_EXPIRED, Event.CONSUME): (
        Move(TICKET_REDEEMED, _EXPIRED, Answer.TICKET_USED),
        Move(ALWAYS, _EXPIRED, Answer.GONE),
    ),
    # The port burns what it holds; the API never asks (MANAGE answered GONE before).
    (_EXPIRED, Event.DELETE): (Move(ALWAYS, _GONE, Answer.BURNED),),
    (_EXPIRED, Event.EXPIRE): (Move(ALWAYS, _EXPIRED, Answer.NOTHING),),
    (_EXPIRED, Event.SWEEP): (Move(ALWAYS, _GONE, Answer.BURNED),),
    # -- gone: nothing stored ---------------------------------------------------------------
    (_GONE, Event.READ): (Move(ALWAYS, _GONE, Answer.GONE),),
    (_GONE, Event.MANAGE): (Move(ALWAYS, _GONE, Answer.GONE),),
    (_GONE, Event.CONSUME): (
        Move(TICKET_REDEEMED, _GONE, Answer.TICKET_USED),
        Move(ALWAYS, _GONE, Answer.GONE),
    ),
    (_GONE, Event.DELETE): (Move(ALWAYS, _GONE, Answer.GONE),),
    (_GONE, Event.EXPIRE): (Move(ALWAYS, _GONE, Answer.NOTHING),),
    (_GONE, Event.SWEEP): (Move(ALWAYS, _GONE, Answer.NOTHING),),
}

# Pairs no caller can produce: a new secret's id is 128 fresh random bits, so it is never
# that of a stored one (SQLite would refuse the duplicate primary key).
UNREACHABLE: frozenset[tuple[SecretState, Event]] = frozenset(
    {(_LIVE, Event.CREATE), (_EXPIRED, Event.CREATE)}
)


class ImpossibleMove(Exception):
    """An event that cannot reach a secret in this state (see UNREACHABLE)."""


def next_move(state: SecretState, event: Event, facts: Facts) -> Move:
    """The row taken for `event` in `state` given `facts`."""
    for move in TRANSITIONS.get((state, event), ()):
        if move.guard.holds(facts):
            return move
    raise ImpossibleMove(f"{event.value} cannot happen to a {state.value} secret")


class SecretLifecycle:
    """One secret's place in the table: a model for tests and a spec for readers."""

    def __init__(self) -> None:
        self.state = SecretState.GONE
        self.views_left = 0

    @classmethod
    def created(cls, views: int) -> SecretLifecycle:
        """A secret just stored with `views` views (CREATE from GONE)."""
        lifecycle = cls()
        lifecycle.handle(Event.CREATE)
        lifecycle.views_left = views
        return lifecycle

    @property
    def is_stored(self) -> bool:
        return self.state is not SecretState.GONE

    def handle(
        self, event: Event, *, is_ticket_redeemed: bool = False, is_token_right: bool = False
    ) -> Move:
        """Take the row for `event`, apply it, and return it (its answer, its effects)."""
        facts = Facts(self.views_left, is_ticket_redeemed, is_token_right)
        move = next_move(self.state, event, facts)
        if move.takes_view:
            self.views_left -= 1
        self.state = move.target
        return move
