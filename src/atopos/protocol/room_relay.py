"""The relay side of a room, sans-I/O (docs/protocol/rooms.md sections 12 and 13).

`RelayRoom` holds one room's RAM state and turns events (a connection opened with its
challenge, a text frame, a connection closed, a timer tick), each with `now` passed in, into
actions for the I/O layer: send a text to connections, close a connection with a code, wipe
the room. Which frame a connection may send in which state is one explicit table
(`CONNECTION_TRANSITIONS`: state x event -> guarded next states), and so is the room's life
(`ROOM_TRANSITIONS`). Nothing here reads a clock, draws randomness or touches a socket.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.device import is_valid_ed25519_public_key, is_valid_x25519_public_key
from atopos.crypto.room_keys import (
    ProofKind,
    end_proof_message,
    join_proof_message,
    verify_signature,
)
from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_wire import (
    Admit,
    Challenge,
    Change,
    ClientFrame,
    Closing,
    Commit,
    End,
    Ended,
    Error,
    Join,
    JoinItem,
    Knock,
    Leave,
    Left,
    Message,
    Prove,
    Refuse,
    RelayedCommit,
    RelayedMessage,
    RelayErrorCode,
    RelayFrame,
    RosterItem,
    Sent,
    Unlock,
    Welcome,
    b64,
    decode_client_frame,
    encode_frame,
)

__all__ = [
    "CLOSE_BAD_PROOF",
    "CLOSE_FULL",
    "CLOSE_MALFORMED",
    "CLOSE_NORMAL",
    "CLOSE_RATE_LIMITED",
    "CLOSE_TIMEOUT",
    "CLOSE_UNKNOWN",
    "CONNECTION_TRANSITIONS",
    "ROOM_TRANSITIONS",
    "Action",
    "CloseConnection",
    "ConnectionState",
    "RelayLimits",
    "RelayRoom",
    "RoomState",
    "SendText",
    "WipeRoom",
]

# WebSocket close codes (section 13).
CLOSE_NORMAL = 1000
CLOSE_MALFORMED = 4400
CLOSE_BAD_PROOF = 4403
CLOSE_UNKNOWN = 4404
CLOSE_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429
CLOSE_FULL = 4429  # a full room is a capacity refusal, like a rate limit

EndReason: TypeAlias = Literal["creator", "ttl", "empty"]
ErrorCode: TypeAlias = RelayErrorCode
_CLOSE_FOR: dict[str, int] = {
    "malformed": CLOSE_MALFORMED,
    "too_large": CLOSE_MALFORMED,
    "unexpected": CLOSE_MALFORMED,
    "bad_commit": CLOSE_MALFORMED,
    "stale": CLOSE_MALFORMED,
    "bad_proof": CLOSE_BAD_PROOF,
    "not_admitted": CLOSE_BAD_PROOF,
    "ended": CLOSE_UNKNOWN,
    "full": CLOSE_FULL,
    "rate_limited": CLOSE_RATE_LIMITED,
}


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Section 13's numbers; tests shrink them."""

    max_members: int = 500
    frames_per_second: float = 50.0  # token bucket refill per connection
    frame_burst: float = 100.0  # token bucket size
    handshake_seconds: float = 10.0  # challenge -> join
    commit_seconds: float = 10.0  # named committer's deadline
    empty_grace_seconds: float = 300.0
    closing_seconds: int = 5


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendText:
    """Send one text message to each of these connections (one encoding for all)."""

    connections: tuple[int, ...]
    text: str


@dataclass(frozen=True, slots=True)
class CloseConnection:
    connection: int
    code: int


@dataclass(frozen=True, slots=True)
class WipeRoom:
    """The room is over: forget it (its id becomes unknown)."""


Action: TypeAlias = SendText | CloseConnection | WipeRoom


# -- states and tables -----------------------------------------------------------------------


class ConnectionState(enum.Enum):
    PROVING = "proving"  # challenge sent, waiting for `prove`
    UNLOCKED = "unlocked"  # proof verified, S_relay released, waiting for `join`
    MEMBER = "member"  # welcomed: gets every room frame
    CLOSED = "closed"


class RoomState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # `closing` sent; members leave until the grace ends
    ENDED = "ended"  # wiped


@dataclass(frozen=True, slots=True)
class Transition:
    """(state, event) and a named guard -> next state; the first guard that holds wins."""

    state: ConnectionState
    event: str
    guard: str
    to: ConnectionState


_P, _U, _M, _C = (
    ConnectionState.PROVING,
    ConnectionState.UNLOCKED,
    ConnectionState.MEMBER,
    ConnectionState.CLOSED,
)

CONNECTION_TRANSITIONS: tuple[Transition, ...] = (
    Transition(_P, "prove", "proof_verifies", _U),  # sends unlock (burns an invite)
    Transition(_P, "prove", "otherwise", _C),  # error bad_proof, 4403
    Transition(_U, "join", "room_has_room", _M),  # sends welcome; queues or knocks
    Transition(_U, "join", "room_full", _C),  # error full, 4429
    Transition(_U, "join", "bad_keys", _C),  # error malformed, 4400
    Transition(_M, "commit", "not_a_commit_to_make", _C),  # error bad_commit, 4400
    Transition(_M, "commit", "from_committer_or_update", _M),  # fans out, re-knocks, schedules
    Transition(_M, "commit", "stale", _M),  # dropped silently (section 12)
    Transition(_M, "msg", "from_roster_in_epoch", _M),  # fans out, `sent` to the author
    Transition(_M, "msg", "stale", _M),  # dropped silently (in flight across a commit)
    Transition(_M, "admit", "from_roster_for_knock", _M),  # queues the join
    Transition(_M, "admit", "stale", _M),
    Transition(_M, "refuse", "from_roster_or_self", _M),  # drops the joiner (4403)
    Transition(_M, "refuse", "stale", _M),
    Transition(_M, "leave", "always", _C),  # fans out left, queues the leave, 1000
    Transition(_M, "end", "creator_proof_verifies", _M),  # room -> closing
    Transition(_M, "end", "otherwise", _C),  # error bad_proof, 4403
    Transition(_P, "timer", "handshake_expired", _C),  # 4408
    Transition(_U, "timer", "handshake_expired", _C),  # 4408
    Transition(_M, "timer", "commit_deadline_passed", _C),  # silent committer leaves, 4408
)
# Any other (state, frame): error unexpected, 4400. A malformed or too large frame: 4400.
# Over the frame rate: error rate_limited, 4429. A dropped connection in any state: closed
# (a member's drop is a leave with no published seeds).

ROOM_TRANSITIONS: tuple[tuple[RoomState, str, RoomState], ...] = (
    (RoomState.OPEN, "end by creator | ttl reached | empty past grace", RoomState.CLOSING),
    (RoomState.CLOSING, "grace over | nobody left", RoomState.ENDED),
)


@dataclass(slots=True)
class _Connection:
    id: int
    challenge: bytes
    opened_at: float
    state: ConnectionState = ConnectionState.PROVING
    index: int | None = None
    tokens: float = 0.0
    refilled_at: float = 0.0
    has_left: bool = False  # sent `leave` while the room was closing: waits for `ended`


@dataclass(slots=True)
class _Pending:
    change: Change
    deadline: float


@dataclass(slots=True)
class RelayRoom:
    """One room's relay state (section 12), RAM only."""

    creation: RoomCreation
    created_at: float
    limits: RelayLimits = field(default_factory=RelayLimits)
    state: RoomState = RoomState.OPEN
    seq: int = 0
    epoch: int = 0
    next_index: int = 0
    roster: dict[int, RosterItem] = field(default_factory=dict)
    queued_joins: list[JoinItem] = field(default_factory=list)
    queued_leaves: list[int] = field(default_factory=list)
    knocks: dict[int, JoinItem] = field(default_factory=dict)
    pending: _Pending | None = None
    invites: dict[str, str] = field(default_factory=dict)
    connections: dict[int, _Connection] = field(default_factory=dict)
    empty_since: float | None = None
    closing_until: float = 0.0
    end_reason: EndReason = "empty"

    def __post_init__(self) -> None:
        self.invites = {i.verifier: i.sealed_link for i in self.creation.invites}
        self.empty_since = self.created_at

    @property
    def room_id(self) -> bytes:
        return b64url_decode(self.creation.room_id)

    @property
    def expires_at(self) -> int:
        return int(self.created_at) + self.creation.ttl

    def member_count(self) -> int:
        return sum(1 for c in self.connections.values() if c.state is ConnectionState.MEMBER)

    def connection_count(self) -> int:
        return len(self.connections)

    # -- events ------------------------------------------------------------------------------

    def open(self, connection: int, challenge: bytes, now: float) -> list[Action]:
        """A WebSocket connected to this room; `challenge` is 32 fresh random bytes."""
        out: list[Action] = []
        if self.state is not RoomState.OPEN:
            self._error_to(out, connection, "ended", "The room has ended.")
            return out
        # A connection does not count against the empty grace until it proves the link
        # (`_after`): knowing the room id alone must not keep a room alive.
        self.connections[connection] = _Connection(
            connection, challenge, now, tokens=self.limits.frame_burst, refilled_at=now
        )
        self._send(out, connection, Challenge(v=1, nonce=b64(challenge)))
        return out

    def receive(self, connection: int, text: str, now: float) -> list[Action]:
        """One text message from a connection."""
        out: list[Action] = []
        record = self.connections.get(connection)
        if record is None or record.state is ConnectionState.CLOSED:
            return out
        if not self._take_token(record, now):
            self._fail(out, record, "rate_limited", "Too many frames.", now)
            return out
        try:
            frame = decode_client_frame(text)
        except RoomProtocolError as error:
            code: ErrorCode = "too_large" if error.code == "too_large" else "malformed"
            self._fail(out, record, code, error.message, now)
            return out
        except UnicodeEncodeError:  # a str with lone surrogates (never from a WebSocket)
            self._fail(out, record, "malformed", "The frame is not valid UTF-8.", now)
            return out
        handler = self._handlers().get((record.state, _frame_type(frame)))
        if handler is None:
            self._fail(out, record, "unexpected", "This frame is not expected now.", now)
            return out
        handler(out, record, frame, now)
        self._after(out, now)
        return out

    def closed(self, connection: int, now: float) -> list[Action]:
        """The connection went away (the peer closed, a timeout, a send that failed)."""
        out: list[Action] = []
        record = self.connections.pop(connection, None)
        if record is None:
            return out
        was_member = record.state is ConnectionState.MEMBER
        record.state = ConnectionState.CLOSED
        if was_member and record.index is not None and self.state is RoomState.OPEN:
            self._member_gone(out, record.index, None, now)
        self._after(out, now)
        return out

    def tick(self, now: float) -> list[Action]:
        """Time passed: handshake and commit deadlines, TTL, empty grace, closing grace."""
        out: list[Action] = []
        if self.state is RoomState.ENDED:
            return out
        if self.state is RoomState.OPEN:
            for record in list(self.connections.values()):
                if (
                    record.state in (ConnectionState.PROVING, ConnectionState.UNLOCKED)
                    and now >= record.opened_at + self.limits.handshake_seconds
                ):
                    self._fail(out, record, None, "", now, close=CLOSE_TIMEOUT)
            pending = self.pending
            if pending is not None and now >= pending.deadline:
                self._silent_committer(out, pending.change.committer, now)
            if now >= self.expires_at:
                self._begin_end(out, "ttl", now)
            elif (
                self.empty_since is not None
                and now >= self.empty_since + self.limits.empty_grace_seconds
            ):
                self._begin_end(out, "empty", now)
        self._after(out, now)
        if self.state is RoomState.CLOSING and now >= self.closing_until:
            self._finish(out)
        return out

    # -- frame handlers (one per table row group) ----------------------------------------------

    def _handlers(self) -> dict[tuple[ConnectionState, str], Callable[..., None]]:
        return {
            (_P, "prove"): self._on_prove,
            (_U, "join"): self._on_join,
            (_M, "commit"): self._on_commit,
            (_M, "msg"): self._on_msg,
            (_M, "admit"): self._on_admit,
            (_M, "refuse"): self._on_refuse,
            (_M, "leave"): self._on_leave,
            (_M, "end"): self._on_end,
        }

    def _on_prove(self, out: list[Action], record: _Connection, frame: Prove, now: float) -> None:
        kind = ProofKind[frame.kind.upper()]
        creation = self.creation
        if kind is ProofKind.INVITE:
            verifier: str | None = frame.key if frame.key in self.invites else None
        elif kind is ProofKind.CREATOR:
            verifier = creation.creator_verifier
        else:
            verifier = None if creation.invite_only else creation.join_verifier
        message = join_proof_message(kind, self.room_id, record.challenge)
        if (
            verifier is None
            or frame.key != verifier
            or not verify_signature(b64url_decode(verifier), b64url_decode(frame.sig), message)
        ):  # guard: otherwise
            self._fail(out, record, "bad_proof", "The proof does not verify.", now)
            return
        # guard: proof_verifies. An invite is burnt in the same step that releases it.
        sealed_link = self.invites.pop(frame.key) if kind is ProofKind.INVITE else None
        record.state = ConnectionState.UNLOCKED
        self._send(
            out,
            record.id,
            Unlock(
                s_relay=creation.s_relay,
                knock=creation.knock,
                invite_only=creation.invite_only,
                expires_at=self.expires_at,
                name=creation.name,
                sealed_link=sealed_link,
            ),
        )

    def _on_join(self, out: list[Action], record: _Connection, frame: Join, now: float) -> None:
        if not (
            is_valid_ed25519_public_key(b64url_decode(frame.sign_key))
            and is_valid_x25519_public_key(b64url_decode(frame.seal_key))
        ):  # guard: bad_keys
            self._fail(out, record, "malformed", "The member keys are not usable.", now)
            return
        if self.member_count() >= self.limits.max_members:  # guard: room_full
            self._fail(out, record, "full", "The room is full.", now)
            return
        index = self.next_index  # guard: room_has_room
        self.next_index += 1
        record.index = index
        record.state = ConnectionState.MEMBER
        self._send(out, record.id, Welcome(seq=self.seq, index=index, epoch=self.epoch))
        item = JoinItem(
            index=index,
            sign_key=frame.sign_key,
            seal_key=frame.seal_key,
            nonce=b64(record.challenge),
            auth=frame.auth,
            profile=frame.profile,
        )
        if self.creation.knock and self.roster:
            self.knocks[index] = item
            self._fan_out_knock(out, item)
            return
        self.queued_joins.append(item)

    def _on_commit(self, out: list[Action], record: _Connection, frame: Commit, now: float) -> None:
        refusal = _impossible_commit(frame) or self._impossible_update(record, frame)
        if refusal is not None:  # guard: not_a_commit_to_make
            self._fail(out, record, "bad_commit", refusal, now)
            return
        if not self._commit_is_current(record, frame):  # guard: stale (dropped, no error)
            return
        pending = self.pending
        self.epoch = frame.epoch
        self.roster = {item.index: item for item in frame.roster}
        if frame.reason != "update" and pending is not None:
            done = {j.index for j in pending.change.joins}
            self.queued_joins = [j for j in self.queued_joins if j.index not in done]
            left = set(pending.change.leaves)
            self.queued_leaves = [i for i in self.queued_leaves if i not in left]
            self.pending = None
        self._fan_out(
            out,
            lambda seq: RelayedCommit(
                seq=seq,
                epoch=frame.epoch,
                committer=frame.committer,
                reason=frame.reason,
                transcript=frame.transcript,
                membership=frame.membership,
                roster=frame.roster,
                joins=frame.joins,
                sealed=frame.sealed,
                room_auth=frame.room_auth,
                member_tag=frame.member_tag,
                confirm=frame.confirm,
                sig=frame.sig,
            ),
        )
        if frame.joins:
            self._announce_knocks(out)

    def _announce_knocks(self, out: list[Action]) -> None:
        """Announce every waiting knock again after a commit that added members: a knock
        went only to the members of its time, and without this a knocker whose members all
        left, or who knocked before the member now present came in, would wait unheard
        (section 11.3). Members who saw a knock before show it once."""
        for item in list(self.knocks.values()):
            self._fan_out_knock(out, item)

    def _fan_out_knock(self, out: list[Action], item: JoinItem) -> None:
        self._fan_out(
            out,
            lambda seq: Knock(
                seq=seq,
                index=item.index,
                sign_key=item.sign_key,
                seal_key=item.seal_key,
                nonce=item.nonce,
                auth=item.auth,
                profile=item.profile,
            ),
        )

    def _impossible_update(self, record: _Connection, frame: Commit) -> str | None:
        """Why this `update` is one no honest member can send now, or None (guard
        not_a_commit_to_make). Checked only when it would otherwise be current (the next
        epoch, its own, nothing pending, from a roster member): then its author built it on
        the relay's own roster, and 7.3 step 5 says what it may change."""
        current = self.roster
        if (
            frame.reason != "update"
            or frame.epoch != self.epoch + 1
            or frame.committer != record.index
            or self.pending is not None
            or record.index not in current
        ):
            return None
        if [item.index for item in frame.roster] != sorted(current):
            return "An update keeps the roster's members."
        for item in frame.roster:
            kept = current[item.index]
            if item.identity != kept.identity or item.profile != kept.profile:
                return "An update keeps every identity and profile."
            if item.index != record.index and item != kept:
                return "An update changes only its committer's keys."
        return None

    def _commit_is_current(self, record: _Connection, frame: Commit) -> bool:
        """Guard from_committer_or_update: the named committer's commit of the pending change
        (same epoch, reason, roster and joins as announced), or a roster member's update when
        nothing is pending (the first one for an epoch wins; `_impossible_update` has checked
        its content)."""
        if frame.epoch != self.epoch + 1 or frame.committer != record.index:
            return False
        if frame.reason == "update":
            return self.pending is None and record.index in self.roster
        pending = self.pending
        # A mismatch may be a commit of an earlier announcement of this epoch (the change
        # was announced again meanwhile): stale, not a lie.
        return (
            pending is not None
            and pending.change.committer == frame.committer
            and pending.change.reason == frame.reason
            and list(pending.change.roster) == list(frame.roster)
            and list(pending.change.joins) == list(frame.joins)
        )

    def _on_msg(self, out: list[Action], record: _Connection, frame: Message, now: float) -> None:
        if (
            record.index is None
            or frame.sender != record.index
            or record.index not in self.roster
            or frame.epoch not in (self.epoch, self.epoch - 1)
        ):  # guard: stale (a frame in flight across a commit, or a removed member)
            return
        seq = self._next_seq()
        text = encode_frame(
            RelayedMessage(
                seq=seq,
                epoch=frame.epoch,
                sender=frame.sender,
                counter=frame.counter,
                ct=frame.ct,
                sig=frame.sig,
            )
        )
        others = tuple(c for c in self._member_ids() if c != record.id)
        if others:
            out.append(SendText(others, text))
        self._send(out, record.id, Sent(seq=seq, epoch=frame.epoch, counter=frame.counter))

    def _on_admit(self, out: list[Action], record: _Connection, frame: Admit, now: float) -> None:
        if record.index not in self.roster or frame.index not in self.knocks:  # guard: stale
            return
        knock = self.knocks.pop(frame.index)
        self.queued_joins.append(
            JoinItem(
                index=knock.index,
                sign_key=knock.sign_key,
                seal_key=knock.seal_key,
                nonce=knock.nonce,
                auth=knock.auth,
                profile=knock.profile,
                admitted_by=record.index,
                admission=frame.sig,
            )
        )

    def _on_refuse(self, out: list[Action], record: _Connection, frame: Refuse, now: float) -> None:
        index = frame.index
        if record.index not in self.roster or index in self.roster:  # guard: stale
            return
        is_joiner = index in self.knocks or any(j.index == index for j in self.queued_joins)
        pending = self.pending
        in_pending = pending is not None and any(j.index == index for j in pending.change.joins)
        if not (is_joiner or in_pending):
            return
        self.knocks.pop(index, None)
        self.queued_joins = [j for j in self.queued_joins if j.index != index]
        if in_pending:
            self.pending = None  # re-announced without the refused joiner
        for other in list(self.connections.values()):
            if other.index == index:
                self._fail(out, other, "not_admitted", "The members refused the join.", now)

    def _on_leave(self, out: list[Action], record: _Connection, frame: Leave, now: float) -> None:
        index = record.index
        if self.state is RoomState.CLOSING:
            # The room is ending: the leave is fanned out, and the connection stays until
            # `ended` so that every member sees the end (section 11.4).
            if not record.has_left and index is not None:
                record.has_left = True
                self._fan_out(out, lambda seq: _left(seq, index, frame))
            return
        record.state = ConnectionState.CLOSED
        del self.connections[record.id]
        out.append(CloseConnection(record.id, CLOSE_NORMAL))
        if index is not None:
            self._member_gone(out, index, frame, now)

    def _on_end(self, out: list[Action], record: _Connection, frame: End, now: float) -> None:
        message = end_proof_message(self.room_id, record.challenge)
        verifier = b64url_decode(self.creation.creator_verifier)
        if not verify_signature(verifier, b64url_decode(frame.sig), message):
            self._fail(out, record, "bad_proof", "The end proof does not verify.", now)
            return
        self._begin_end(out, "creator", now)

    # -- membership, scheduling, ending ----------------------------------------------------------

    def _member_gone(self, out: list[Action], index: int, leave: Leave | None, now: float) -> None:
        self._fan_out(out, lambda seq: _left(seq, index, leave))
        self.knocks.pop(index, None)
        self.queued_joins = [j for j in self.queued_joins if j.index != index]
        if index in self.roster and index not in self.queued_leaves:
            self.queued_leaves.append(index)
        pending = self.pending
        if pending is not None and (
            pending.change.committer == index
            or any(j.index == index for j in pending.change.joins)
            or any(item.index == index for item in pending.change.roster)
        ):
            self.pending = None  # re-announced with the leave folded in

    def _silent_committer(self, out: list[Action], committer: int, now: float) -> None:
        """The named committer missed its deadline: it is treated as leaving (section 12)."""
        self.pending = None
        for record in list(self.connections.values()):
            if record.index == committer:
                del self.connections[record.id]
                record.state = ConnectionState.CLOSED
                out.append(CloseConnection(record.id, CLOSE_TIMEOUT))
        self._member_gone(out, committer, None, now)

    def _after(self, out: list[Action], now: float) -> None:
        """Schedule the next change and note when the room became empty: with no connection
        that proved the link (a stranger who knows only the room id keeps nothing alive)."""
        if self.state is RoomState.OPEN:
            self._schedule(out, now)
            if any(c.state in (_U, _M) for c in self.connections.values()):
                self.empty_since = None
            elif self.empty_since is None:
                self.empty_since = now
        elif self.state is RoomState.CLOSING and all(
            self.connections[c].has_left for c in self._member_ids()
        ):
            self._finish(out)  # everyone has left: no need to wait for the grace

    def _schedule(self, out: list[Action], now: float) -> None:
        """Announce the next change unless one waits for its commit (section 12)."""
        if self.pending is not None:
            return
        joins = list(self.queued_joins)
        leaves = [i for i in self.queued_leaves if i in self.roster]
        self.queued_leaves = leaves
        if not joins and not leaves:
            return
        staying = {i: item for i, item in self.roster.items() if i not in leaves}
        new_roster = dict(staying)
        for join in joins:
            new_roster[join.index] = RosterItem(
                index=join.index,
                identity=join.sign_key,
                sign_key=join.sign_key,
                seal_key=join.seal_key,
                profile=join.profile,
            )
        reason: Literal["found", "change"]
        if staying:
            committer, reason = min(staying), "change"
        elif not joins:
            self.roster, self.queued_leaves = {}, []  # the room is empty of members now
            return
        else:
            joins = joins[:1]
            committer, reason = joins[0].index, "found"
            new_roster = {committer: new_roster[committer]}
        change = Change(
            seq=0,
            epoch=self.epoch + 1,
            committer=committer,
            reason=reason,
            roster=[new_roster[i] for i in sorted(new_roster)],
            joins=joins,
            leaves=leaves,
        )
        self.pending = _Pending(change, now + self.limits.commit_seconds)
        self._fan_out(
            out,
            lambda seq: Change(
                seq=seq,
                epoch=change.epoch,
                committer=change.committer,
                reason=change.reason,
                roster=change.roster,
                joins=change.joins,
                leaves=change.leaves,
            ),
        )

    def _begin_end(self, out: list[Action], reason: EndReason, now: float) -> None:
        if self.state is not RoomState.OPEN:
            return
        self.state = RoomState.CLOSING
        self.end_reason = reason
        self.pending = None
        seconds = self.limits.closing_seconds
        self.closing_until = now + seconds
        self._fan_out(out, lambda seq: Closing(seq=seq, seconds=seconds, reason=reason))
        for record in list(self.connections.values()):
            if record.state is not ConnectionState.MEMBER:
                self._fail(out, record, "ended", "The room is ending.", now)

    def _finish(self, out: list[Action]) -> None:
        """Send `ended`, close everyone, wipe every secret and the roster."""
        members = self._member_ids()
        if members:
            out.append(SendText(members, encode_frame(Ended(reason=self.end_reason))))
        for connection in list(self.connections):
            out.append(CloseConnection(connection, CLOSE_NORMAL))
        self.connections.clear()
        self.state = RoomState.ENDED
        self.roster.clear()
        self.queued_joins.clear()
        self.queued_leaves.clear()
        self.knocks.clear()
        self.invites.clear()
        self.pending = None
        # The creation record (S_relay, verifiers, sealed name) goes with the room object:
        # the registry drops its only reference on WipeRoom.
        out.append(WipeRoom())

    # -- plumbing ------------------------------------------------------------------------------

    def _take_token(self, record: _Connection, now: float) -> bool:
        """Token bucket: `frames_per_second` refill, `frame_burst` deep."""
        limits = self.limits
        elapsed = max(0.0, now - record.refilled_at)
        record.tokens = min(limits.frame_burst, record.tokens + elapsed * limits.frames_per_second)
        record.refilled_at = now
        if record.tokens < 1.0:
            return False
        record.tokens -= 1.0
        return True

    def _member_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.connections.values() if c.state is ConnectionState.MEMBER)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _fan_out(self, out: list[Action], make: Callable[[int], RelayFrame]) -> None:
        """One sequence number per room frame, one encoding for every member."""
        text = encode_frame(make(self._next_seq()))
        members = self._member_ids()
        if members:
            out.append(SendText(members, text))

    def _send(self, out: list[Action], connection: int, frame: RelayFrame) -> None:
        out.append(SendText((connection,), encode_frame(frame)))

    def _error_to(self, out: list[Action], connection: int, code: ErrorCode, message: str) -> None:
        self._send(out, connection, Error(code=code, message=message))
        out.append(CloseConnection(connection, _CLOSE_FOR[code]))

    def _fail(
        self,
        out: list[Action],
        record: _Connection,
        code: ErrorCode | None,
        message: str,
        now: float,
        *,
        close: int | None = None,
    ) -> None:
        """Send `error` (unless code is None), close the connection, treat it as gone."""
        was_member = record.state is ConnectionState.MEMBER
        record.state = ConnectionState.CLOSED
        self.connections.pop(record.id, None)
        if code is not None:
            self._send(out, record.id, Error(code=code, message=message))
        out.append(CloseConnection(record.id, close or _CLOSE_FOR[code or "malformed"]))
        if was_member and record.index is not None and self.state is RoomState.OPEN:
            self._member_gone(out, record.index, None, now)


def _impossible_commit(frame: Commit) -> str | None:
    """Why no honest member sends this commit at any time, or None (guard
    not_a_commit_to_make): its roster is in strictly ascending index order (so no index
    twice), an update has no joins, and `sealed` has one entry per member of the new roster
    but the committer, in index order (7.3 steps 5-6)."""
    indices = [item.index for item in frame.roster]
    if any(a >= b for a, b in itertools.pairwise(indices)):
        return "The roster is not in ascending index order."
    if frame.reason == "update" and frame.joins:
        return "An update has no joins."
    if [item.index for item in frame.sealed] != [i for i in indices if i != frame.committer]:
        return "The commit does not seal to every member but its committer."
    return None


def _frame_type(frame: ClientFrame) -> str:
    return type(frame).__struct_config__.tag  # type: ignore[return-value]


def _left(seq: int, index: int, leave: Leave | None) -> Left:
    """The `left` for member `index`: its sealed seeds passed on unread (the relay holds no
    epoch link, section 11.4); none for a member that vanished."""
    if leave is None:
        return Left(seq=seq, index=index)
    return Left(seq=seq, index=index, epoch=leave.epoch, sealed_seeds=leave.sealed_seeds)
