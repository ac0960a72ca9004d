"""The member side of the room protocol, sans-I/O (docs/protocol/rooms.md, "Member").

`RoomMember` takes the relay's text frames (`receive`) and the user's commands (`send_text`,
`admit`, `refuse`, `update`, `leave`, `end`), returns events for the interface and queues
frames for the relay (`outgoing`). It opens no socket, reads no clock (callers pass `now`,
in seconds) and draws randomness only from the `RandomBytes` it was given.

Every legal move is one row of `TRANSITIONS`, in the manner of h11's `_state.py`: (state,
event, guard) -> next state, where the guard names the outcome a handler found (for
instance whether a commit adds or removes this member). A frame with no row for the
current state is refused with `RoomProtocolError("unexpected")`. A refused frame leaves the
state as it was (handlers check everything before they change anything), except that its
relay sequence number counts as seen, so a client shows a notice and carries on.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from typing import Final

import msgspec

from atopos.crypto.device import is_valid_x25519_public_key
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.randomness import RandomBytes
from atopos.crypto.room_keys import (
    MAX_PROFILE_TEXT_BYTES,
    MemberKeys,
    ProofKind,
    RoomSecrets,
    derive_proof_key,
    derive_room_secrets,
    end_proof_message,
    join_proof_message,
    member_auth_message,
    member_auth_tag,
    open_invite_link,
    open_metadata,
    profile_aad,
    room_name_aad,
    seal_metadata,
    verify_signature,
)
from atopos.crypto.room_message import MAX_BODY_BYTES, decrypt_message, encrypt_message, message_aad
from atopos.crypto.room_published_seeds import MAX_PUBLISHED_SEEDS, seal_published_seeds
from atopos.crypto.room_ratchet import EpochChains, MessageKeyUnavailable
from atopos.crypto.room_roster import RosterEntry
from atopos.crypto.room_safety import safety_code
from atopos.crypto.room_seal import open_secret, seal_aad
from atopos.crypto.room_transcript import (
    CommitReason,
    JoinEvidence,
    admission_message,
    confirm_tag,
    membership_after,
    membership_start,
    message_signing_input,
    transcript_after,
    transcript_start,
)
from atopos.protocol.room_commit import (
    REASONS,
    CommitView,
    build_commit,
    check_change,
    check_joins,
    check_member_tag,
    check_room_auth,
    check_sealed_to_all,
    check_signature,
    check_update,
    join_from_wire,
    joiner_is_authentic,
    read_commit,
    roster_from_wire,
)
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import (
    EpochStarted,
    JoinRequested,
    MemberEvent,
    MemberLeft,
    MessageDelivered,
    MessageReceived,
    MessagesMissing,
    RelayError,
    RemovedFromRoom,
    RoomClosing,
    RoomEnded,
    RoomUnlocked,
    SequenceGap,
    Welcomed,
)
from atopos.protocol.room_link import RoomLink
from atopos.protocol.room_wire import (
    MAX_MEMBERS,
    Admit,
    Challenge,
    Change,
    ClientFrame,
    Closing,
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
    Sent,
    Unlock,
    Welcome,
    b64,
    decode_relay_frame,
    encode_frame,
    unb64,
)

__all__ = [
    "TRANSITIONS",
    "UPDATE_AFTER_MESSAGES",
    "UPDATE_AFTER_SECONDS",
    "MemberState",
    "RoomMember",
]

# Post-compromise security: a member re-keys itself after this many own messages or this
# long in one epoch, whichever comes first (the client asks `needs_update(now)`).
UPDATE_AFTER_MESSAGES: Final = 100
UPDATE_AFTER_SECONDS: Final = 600


class MemberState(enum.Enum):
    CONNECTING = "connecting"  # waiting for the relay's challenge
    PROVING = "proving"  # sent the proof, waiting for S_relay
    JOINING = "joining"  # sent keys and member-auth, waiting for an index
    WAITING = "waiting"  # has an index, waits for a commit that adds it (or an admission)
    ACTIVE = "active"  # holds the current epoch: reads and sends
    LEAVING = "leaving"  # sent its leave frame; only the end is still of interest
    CLOSED = "closed"  # ended, refused, removed or left: every key dropped


S = MemberState
# (state, event, guard) -> next state. Events are relay frame types ("challenge", ...) and
# local commands ("send", "admit", ...). Guard None means the move has one outcome.
TRANSITIONS: Final[dict[tuple[MemberState, str, str | None], MemberState]] = {
    (S.CONNECTING, "challenge", None): S.PROVING,
    (S.PROVING, "unlock", None): S.JOINING,
    (S.JOINING, "welcome", None): S.WAITING,
    # waiting to be added: the room's traffic flows past unread
    (S.WAITING, "change", "announced"): S.WAITING,
    (S.WAITING, "change", "i_found"): S.WAITING,
    (S.WAITING, "commit", "adds_me"): S.ACTIVE,
    (S.WAITING, "commit", "not_for_me"): S.WAITING,
    (S.WAITING, "msg", None): S.WAITING,
    (S.WAITING, "knock", None): S.WAITING,
    (S.WAITING, "left", None): S.WAITING,
    (S.WAITING, "closing", None): S.LEAVING,
    (S.WAITING, "leave", None): S.LEAVING,
    # a member of the current epoch
    (S.ACTIVE, "change", "announced"): S.ACTIVE,
    (S.ACTIVE, "change", "i_commit"): S.ACTIVE,
    (S.ACTIVE, "change", "bad_joiner"): S.ACTIVE,
    (S.ACTIVE, "commit", "keeps_me"): S.ACTIVE,
    (S.ACTIVE, "commit", "removes_me"): S.CLOSED,
    (S.ACTIVE, "msg", None): S.ACTIVE,
    (S.ACTIVE, "sent", None): S.ACTIVE,
    (S.ACTIVE, "knock", "verified"): S.ACTIVE,
    (S.ACTIVE, "knock", "forged"): S.ACTIVE,
    (S.ACTIVE, "left", None): S.ACTIVE,
    (S.ACTIVE, "closing", None): S.LEAVING,
    (S.ACTIVE, "send", None): S.ACTIVE,
    (S.ACTIVE, "admit", None): S.ACTIVE,
    (S.ACTIVE, "refuse", None): S.ACTIVE,
    (S.ACTIVE, "update", None): S.ACTIVE,
    (S.ACTIVE, "end", None): S.ACTIVE,
    (S.ACTIVE, "leave", None): S.LEAVING,
    # after leaving, the room's frames are dropped unread until the relay closes
    (S.LEAVING, "change", None): S.LEAVING,
    (S.LEAVING, "commit", None): S.LEAVING,
    (S.LEAVING, "msg", None): S.LEAVING,
    (S.LEAVING, "sent", None): S.LEAVING,
    (S.LEAVING, "knock", None): S.LEAVING,
    (S.LEAVING, "left", None): S.LEAVING,
    (S.LEAVING, "closing", None): S.LEAVING,
}
# The relay may end the session from any state but CLOSED.
for _state in MemberState:
    if _state is not S.CLOSED:
        TRANSITIONS[(_state, "ended", None)] = S.CLOSED
        TRANSITIONS[(_state, "error", None)] = S.CLOSED
del _state


class _Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="type", tag="text"):
    """The plaintext of a message frame: {"type": "text", "text": ...} as UTF-8 JSON."""

    text: str


_BODY_DECODER = msgspec.json.Decoder(_Body)
_BODY_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class _Epoch:
    """One epoch as this member holds it: roster, chains (the epoch secret is not kept)."""

    number: int
    roster: list[RosterEntry]
    chains: EpochChains

    def entry(self, index: int) -> RosterEntry | None:
        for entry in self.roster:
            if entry.index == index:
                return entry
        return None


@dataclass(slots=True)
class _PendingCommit:
    epoch: int
    signing_input: bytes
    epoch_secret: bytes
    new_keys: MemberKeys | None


class RoomMember:
    """One member's side of one room connection (see the module docstring)."""

    def __init__(
        self,
        link: RoomLink,
        display_name: str,
        random_bytes: RandomBytes,
        *,
        update_after_messages: int = UPDATE_AFTER_MESSAGES,
        update_after_seconds: float = UPDATE_AFTER_SECONDS,
    ) -> None:
        if not _is_sealable_name(display_name):
            raise ValueError(f"a display name is at most {MAX_PROFILE_TEXT_BYTES} bytes of UTF-8")
        self.state = MemberState.CONNECTING
        self.link = link
        self.room_id = link.room_id
        self.index: int | None = None
        self.safety_code: str | None = None
        self.is_knock = False
        self._display_name = display_name
        self._random = random_bytes
        self._update_after_messages = update_after_messages
        self._update_after_seconds = update_after_seconds
        self._held_keys: MemberKeys | None = MemberKeys.generate(random_bytes)
        self._published_seeds: list[bytes] = []
        self._challenge: bytes | None = None
        self._secrets: RoomSecrets | None = None
        self._profile: bytes | None = None
        self._last_seq: int | None = None
        self._epoch: _Epoch | None = None
        self._previous: _Epoch | None = None
        self._epoch_link: bytes | None = None
        self._epoch_started_at = 0.0
        self._transcript: bytes | None = None
        self._membership: bytes | None = None
        self._announced: Change | None = None
        self._pending: _PendingCommit | None = None
        self._knocks: dict[int, Knock] = {}
        # Members of the current roster the relay said left: they may not commit or send
        # any more (their signing seeds are public). Pruned to the roster at every commit.
        self._left: set[int] = set()
        self._names: dict[int, str] = {}
        self._outbox: list[str] = []
        self._undelivered: set[tuple[int, int]] = set()

    def __repr__(self) -> str:
        return f"RoomMember(state={self.state.value}, index={self.index})"

    # -- the table -------------------------------------------------------------------------

    def _allowed(self, event: str) -> None:
        if not any(
            (self.state, event, guard) in TRANSITIONS
            for guard in (None, *self._GUARDS.get(event, ()))
        ):
            raise RoomProtocolError(
                "unexpected", f"A {event!r} is not expected while {self.state.value}."
            )

    _GUARDS: Final = {
        "change": ("announced", "i_found", "i_commit", "bad_joiner"),
        "commit": ("adds_me", "not_for_me", "keeps_me", "removes_me"),
        "knock": ("verified", "forged"),
    }

    def _move(self, event: str, guard: str | None = None) -> None:
        next_state = TRANSITIONS.get((self.state, event, guard))
        if next_state is None:  # pragma: no cover - handlers only return listed guards
            raise RoomProtocolError("unexpected", f"No move for {event!r}/{guard!r}.")
        self.state = next_state
        if next_state is MemberState.CLOSED:
            self._wipe()

    def _send(self, frame: ClientFrame) -> None:
        self._outbox.append(encode_frame(frame))

    def outgoing(self) -> list[str]:
        """The frames to send to the relay, in order; the queue is emptied."""
        frames, self._outbox = self._outbox, []
        return frames

    # -- what the application may read -------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        return None if self._epoch is None else self._epoch.number

    @property
    def members(self) -> tuple[tuple[int, str], ...]:
        if self._epoch is None:
            return ()
        return tuple((e.index, self._names.get(e.index, "?")) for e in self._epoch.roster)

    def needs_update(self, now: float) -> bool:
        """True when this member should re-key itself: after `update_after_messages` own
        messages in this epoch, or `update_after_seconds` in it once it has sent one."""
        if self.state is not MemberState.ACTIVE or self._epoch is None or self._pending:
            return False
        sent = self._epoch.chains.sent_count
        # Only a member who spoke re-keys on the timer: in a big room an update is a full
        # commit, and an idle member's state gives a thief nothing new to read anyway.
        return sent >= self._update_after_messages or (
            sent > 0 and now - self._epoch_started_at >= self._update_after_seconds
        )

    # -- relay frames ------------------------------------------------------------------------

    def receive(self, data: str | bytes, now: float) -> list[MemberEvent]:
        """Handle one frame from the relay; RoomProtocolError (state unchanged) if refused."""
        if self.state is MemberState.CLOSED:
            raise RoomProtocolError("ended", "This room session is closed.")
        frame = decode_relay_frame(data)
        events: list[MemberEvent] = []
        match frame:
            case Challenge():
                self._allowed("challenge")
                self._on_challenge(frame)
                self._move("challenge")
            case Unlock():
                self._allowed("unlock")
                events.append(self._on_unlock(frame))
                self._move("unlock")
            case Welcome():
                self._allowed("welcome")
                self.index = frame.index
                self._last_seq = frame.seq
                events.append(Welcomed(frame.index))
                self._move("welcome")
            case Ended():
                self._allowed("ended")
                events.append(RoomEnded(frame.reason))
                self._move("ended")
            case Error():
                self._allowed("error")
                events.append(RelayError(frame.code, frame.message))
                self._move("error")
            case _:
                events += self._on_room_frame(frame, now)
        return events

    def _check_seq(self, seq: int, events: list[MemberEvent]) -> None:
        last = self._last_seq
        if last is None or seq <= last:
            raise RoomProtocolError("sequence_gap", "The relay repeated or reordered a frame.")
        if seq != last + 1:
            events.append(SequenceGap(last + 1, seq))
        self._last_seq = seq

    def _on_room_frame(
        self,
        frame: Knock | Change | RelayedCommit | RelayedMessage | Sent | Left | Closing,
        now: float,
    ) -> list[MemberEvent]:
        event = {
            Knock: "knock",
            Change: "change",
            RelayedCommit: "commit",
            RelayedMessage: "msg",
            Sent: "sent",
            Left: "left",
            Closing: "closing",
        }[type(frame)]
        self._allowed(event)
        events: list[MemberEvent] = []
        self._check_seq(frame.seq, events)
        if self.state is MemberState.LEAVING:
            self._move(event)
            return events
        guard: str | None = None
        match frame:
            case Knock():
                if self.state is MemberState.ACTIVE:
                    guard = self._on_knock(frame, events)
            case Change():
                guard = self._on_change(frame)
            case RelayedCommit():
                guard = self._on_commit(frame, now, events)
            case RelayedMessage():
                self._on_message(frame, events)
            case Sent():
                if (frame.epoch, frame.counter) not in self._undelivered:
                    raise RoomProtocolError("stale", "The relay acknowledged an unsent message.")
                self._undelivered.discard((frame.epoch, frame.counter))
                events.append(MessageDelivered(frame.epoch, frame.counter, frame.seq))
            case Left():
                if (
                    self._epoch is not None
                    and frame.index != self.index
                    and self._epoch.entry(frame.index) is not None
                ):
                    self._left.add(frame.index)
                events.append(MemberLeft(frame.index, frame.published_seeds))
            case Closing():
                events.append(RoomClosing(frame.seconds, frame.reason))
                self._send_leave()
        self._move(event, guard)
        return events

    def _on_challenge(self, frame: Challenge) -> None:
        self._challenge = unb64(frame.nonce)
        kind = self.link.proof_kind
        key = derive_proof_key(kind, self.link.proof_secret, self.room_id)
        signature = key.sign(join_proof_message(kind, self.room_id, self._challenge))
        self._send(
            Prove(
                kind=kind.name.lower(),  # type: ignore[arg-type]
                key=b64(key.public_key().public_bytes_raw()),
                sig=b64(signature),
            )
        )

    def _on_unlock(self, frame: Unlock) -> RoomUnlocked:
        s_link = self.link.s_link
        if self.link.invite_secret is not None:
            if frame.sealed_link is None:
                raise RoomProtocolError(
                    "bad_proof", "The relay sent no sealed link for the invite."
                )
            try:
                s_link = open_invite_link(
                    self.link.invite_secret, self.room_id, unb64(frame.sealed_link)
                )
            except DecryptionFailed:
                raise RoomProtocolError("bad_proof", "The invite does not open.") from None
        assert s_link is not None
        secrets = derive_room_secrets(s_link, unb64(frame.s_relay), self.room_id)
        aad = room_name_aad(self.room_id, frame.knock, frame.invite_only)
        try:
            name = open_metadata(secrets, unb64(frame.name), aad) or None
        except DecryptionFailed:
            # A wrong link, a wrong relay shard, or a relay that changed the room's mode.
            raise RoomProtocolError(
                "undecryptable", "The room does not open with this link and this relay."
            ) from None
        self._secrets = secrets
        self.is_knock = frame.knock
        assert self._challenge is not None
        profile = seal_metadata(
            secrets,
            self._display_name,
            profile_aad(self.room_id, self._keys.sign_key),
            self._random,
        )
        self._profile = profile
        auth = member_auth_tag(
            secrets,
            member_auth_message(
                self.room_id, self._challenge, self._keys.sign_key, self._keys.seal_key, profile
            ),
        )
        self._send(
            Join(
                sign_key=b64(self._keys.sign_key),
                seal_key=b64(self._keys.seal_key),
                auth=b64(auth),
                profile=b64(profile),
            )
        )
        return RoomUnlocked(name, frame.expires_at, frame.knock, frame.invite_only)

    # -- knocks and admissions ------------------------------------------------------------------

    def _joiner_is_authentic(self, join: JoinEvidence) -> bool:
        assert self._secrets is not None
        return joiner_is_authentic(self._secrets, join)

    def _joiner_may_join(self, join: JoinEvidence) -> bool:
        """Authentic and, in knock mode, admitted by a current member (what the committer
        checks before it seals anything to a joiner)."""
        if not self._joiner_is_authentic(join):
            return False
        if not self.is_knock:
            return True
        assert self._epoch is not None
        admitter = self._epoch.entry(join.admitted_by) if join.admitted_by is not None else None
        message = admission_message(
            self.room_id, join.index, join.nonce, join.sign_key, join.seal_key
        )
        return (
            admitter is not None
            and join.admission is not None
            and verify_signature(admitter.sign_key, join.admission, message)
        )

    def _name_of(self, profile: bytes, sign_key: bytes) -> str:
        assert self._secrets is not None
        try:
            return open_metadata(self._secrets, profile, profile_aad(self.room_id, sign_key))
        except DecryptionFailed:
            return "?"

    def _on_knock(self, frame: Knock, events: list[MemberEvent]) -> str:
        known = self._knocks.get(frame.index)
        if known is not None and msgspec.structs.replace(known, seq=frame.seq) == frame:
            # The relay announces waiting knocks again when members join (section 11.3).
            return "verified"
        join = join_from_wire(
            JoinItem(
                index=frame.index,
                sign_key=frame.sign_key,
                seal_key=frame.seal_key,
                nonce=frame.nonce,
                auth=frame.auth,
                profile=frame.profile,
            )
        )
        if not self._joiner_is_authentic(join):
            # A joiner without the room secret: the relay made it up. Refuse it right away.
            self._send(Refuse(index=frame.index))
            return "forged"
        self._knocks[frame.index] = frame
        while len(self._knocks) > MAX_MEMBERS:  # the oldest knock waits longest: drop it
            del self._knocks[next(iter(self._knocks))]
        events.append(JoinRequested(frame.index, self._name_of(join.profile, join.sign_key)))
        return "verified"

    def admit(self, index: int) -> None:
        """Admit a knocking joiner: sign its keys and nonce (knock mode)."""
        self._allowed("admit")
        knock = self._knocks.pop(index, None)
        if knock is None:
            raise RoomProtocolError("unexpected", "Nobody with that index is knocking.")
        message = admission_message(
            self.room_id, index, unb64(knock.nonce), unb64(knock.sign_key), unb64(knock.seal_key)
        )
        self._send(Admit(index=index, sig=b64(self._keys.sign(message))))
        self._move("admit")

    def refuse(self, index: int) -> None:
        self._allowed("refuse")
        self._knocks.pop(index, None)
        self._send(Refuse(index=index))
        self._move("refuse")

    # -- changes and commits ----------------------------------------------------------------

    def _on_change(self, frame: Change) -> str:
        if frame.reason == "found":
            if self.state is not MemberState.WAITING or frame.committer != self.index:
                raise RoomProtocolError("bad_commit", "Only a lone joiner founds an epoch.")
            roster, joins = self._roster_for(frame)
            self._announced = frame
            self._commit_change(frame, roster, joins)
            return "i_found"
        if self.state is MemberState.WAITING or frame.committer != self.index:
            # A commit of ours for this epoch (an update the relay dropped because this
            # change came first, or a change re-announced with another committer) is void.
            self._pending = None
            self._announced = frame
            return "announced"
        assert self._epoch is not None
        if frame.epoch != self._epoch.number + 1:
            raise RoomProtocolError("stale", "The change is not for the next epoch.")
        joins = [join_from_wire(item) for item in frame.joins]
        bad = [join.index for join in joins if not self._joiner_may_join(join)]
        if bad:
            # The relay (or a joiner without the room secret) is trying to add someone:
            # refuse each one; an honest relay then announces the change without them.
            for index in bad:
                self._send(Refuse(index=index))
            return "bad_joiner"
        roster, joins = self._roster_for(frame)
        self._pending = None
        self._announced = frame
        self._commit_change(frame, roster, joins)
        return "i_commit"

    def _roster_for(self, frame: Change) -> tuple[list[RosterEntry], list[JoinEvidence]]:
        """The roster the committer seals to, built from its own roster and the verified
        joiners, never taken from the relay: a relay that swapped a member's X25519 key in
        its announcement would otherwise receive the epoch secret. The announcement must
        match it exactly."""
        joins = [join_from_wire(item) for item in frame.joins]
        joiners = [
            RosterEntry(j.index, j.sign_key, j.sign_key, j.seal_key, j.profile) for j in joins
        ]
        if frame.reason == "found":
            mine = joins[0] if len(joins) == 1 else None
            if (
                mine is None
                or mine.index != self.index
                or mine.sign_key != self._keys.sign_key
                or mine.seal_key != self._keys.seal_key
                or mine.nonce != self._challenge
                or mine.profile != self._profile
            ):
                raise RoomProtocolError("bad_commit", "A founding change must add only me.")
            staying: list[RosterEntry] = []
        else:
            assert self._epoch is not None
            current = {e.index for e in self._epoch.roster}
            leaves = set(frame.leaves)
            joining = [j.index for j in joins]
            if (
                not leaves <= current
                or self.index in leaves
                or len(set(joining)) != len(joining)
                or current & set(joining)
                or not (leaves or joining)
            ):
                raise RoomProtocolError("bad_commit", "The change is not a valid change.")
            staying = [e for e in self._epoch.roster if e.index not in leaves]
        roster = sorted(staying + joiners, key=lambda entry: entry.index)
        if len(roster) > MAX_MEMBERS or roster_from_wire(frame.roster) != roster:
            raise RoomProtocolError("bad_commit", "The announced roster is not the change.")
        return roster, joins

    def _commit_change(
        self, frame: Change, roster: list[RosterEntry], joins: list[JoinEvidence]
    ) -> None:
        if frame.reason == "found":
            previous_link = self._epoch_base()
            transcript = transcript_start(self.room_id)
            membership = membership_start(self.room_id)
        else:
            assert self._epoch_link
            assert self._transcript
            assert self._membership
            previous_link, transcript, membership = (
                self._epoch_link,
                self._transcript,
                self._membership,
            )
        self._build_commit(
            frame.epoch,
            REASONS[frame.reason],
            roster,
            joins,
            previous_link,
            transcript,
            membership,
            self._keys,
            None,
        )

    def _epoch_base(self) -> bytes:
        assert self._secrets is not None
        return self._secrets.epoch_base

    def update(self, now: float) -> None:
        """Re-key this member: fresh key pairs and a fresh epoch sealed to the others only, so
        a copy of the state taken before opens nothing after (post-compromise security)."""
        self._allowed("update")
        if self._pending is not None:
            raise RoomProtocolError("unexpected", "A commit of this member is still pending.")
        assert self._epoch is not None
        assert self.index is not None
        assert self._epoch_link
        assert self._transcript
        assert self._membership
        new_keys = MemberKeys.generate(self._random)
        roster = [
            RosterEntry(e.index, e.identity, new_keys.sign_key, new_keys.seal_key, e.profile)
            if e.index == self.index
            else e
            for e in self._epoch.roster
        ]
        self._build_commit(
            self._epoch.number + 1,
            CommitReason.UPDATE,
            roster,
            [],
            self._epoch_link,
            self._transcript,
            self._membership,
            self._keys,
            new_keys,
        )
        self._move("update")

    def _build_commit(
        self,
        epoch: int,
        reason: CommitReason,
        roster: list[RosterEntry],
        joins: list[JoinEvidence],
        previous_link: bytes,
        transcript: bytes,
        membership: bytes,
        signer: MemberKeys,
        new_keys: MemberKeys | None,
    ) -> None:
        assert self._secrets is not None
        assert self.index is not None
        built = build_commit(
            secrets=self._secrets,
            committer=self.index,
            epoch=epoch,
            reason=reason,
            roster=roster,
            joins=joins,
            previous_link=previous_link,
            transcript=transcript,
            membership=membership,
            signer=signer,
            random_bytes=self._random,
        )
        self._pending = _PendingCommit(epoch, built.signing_input, built.epoch_secret, new_keys)
        self._send(built.frame)

    def _on_commit(self, frame: RelayedCommit, now: float, events: list[MemberEvent]) -> str:
        assert self._secrets is not None
        assert self.index is not None
        view = read_commit(self.room_id, frame)
        check_room_auth(self._secrets, view)
        if self.state is MemberState.WAITING:
            mine = view.entry(self.index)
            if mine is None:
                return "not_for_me"
            self._check_commit_adding_me(view, mine)
        else:
            self._check_commit_from_member(view)
        staying = {e.index for e in view.roster}
        leavers = tuple(
            e.index for e in (self._epoch.roster if self._epoch else []) if e.index not in staying
        )
        pending = self._pending
        is_mine = (
            pending is not None
            and view.committer == self.index
            and pending.epoch == view.epoch
            and pending.signing_input == view.signing_input
        )
        if is_mine:
            assert pending is not None
            epoch_secret = pending.epoch_secret
        elif view.committer == self.index:
            raise RoomProtocolError("bad_commit", "A commit in this member's name it did not make.")
        else:
            if view.entry(self.index) is None:
                self._pending = None
                events.append(RemovedFromRoom(view.epoch))
                return "removes_me"
            entry = view.sealed_to(self.index)
            if entry is None:
                raise RoomProtocolError("bad_commit", "The commit seals nothing to this member.")
            try:
                epoch_secret = open_secret(
                    self._keys,
                    entry.ephemeral,
                    entry.sealed,
                    seal_aad(self.room_id, view.epoch, self.index, view.roster_digest),
                )
            except DecryptionFailed:
                raise RoomProtocolError(
                    "undecryptable", "The epoch secret does not open."
                ) from None
        transcript_next = transcript_after(view.signing_input)
        if not _equal(confirm_tag(epoch_secret, self.room_id, transcript_next), view.confirm):
            raise RoomProtocolError("bad_commit", "The commit's confirmation tag differs.")
        # Everything is checked: take the new epoch.
        if is_mine and pending is not None and pending.new_keys is not None:
            self._published_seeds.append(self._keys.signing_seed())
            self._keys = pending.new_keys
        self._pending = None
        self._announced = None
        self._left &= staying
        if self._epoch is not None:
            for sender in self._epoch.roster:
                missing = self._epoch.chains.skipped_counters(sender.index)
                if missing:
                    events.append(MessagesMissing(sender.index, self._epoch.number, tuple(missing)))
        previous_code = self.safety_code
        chains = EpochChains(
            epoch_secret, self.room_id, view.epoch, [e.index for e in view.roster], self.index
        )
        del epoch_secret
        self._previous = self._epoch
        self._epoch = _Epoch(view.epoch, view.roster, chains)
        self._epoch_link = chains.epoch_link
        self._epoch_started_at = now
        self._undelivered = {sent for sent in self._undelivered if sent[0] >= view.epoch - 1}
        self._transcript = transcript_next
        self._membership = membership_after(view.membership, view.reason, view.epoch, view.roster)
        self.safety_code = safety_code(self.room_id, self._membership)
        # Names of this roster and the previous one (for "bob left"); nothing older is kept.
        kept = {e.index for e in view.roster} | {
            e.index for e in (self._previous.roster if self._previous else [])
        }
        self._names = {i: name for i, name in self._names.items() if i in kept}
        for member in view.roster:
            if member.index not in self._names:
                self._names[member.index] = self._name_of(member.profile, member.identity)
        events.append(
            EpochStarted(
                epoch=view.epoch,
                reason=frame.reason,
                members=self.members,
                joined=tuple(j.index for j in view.joins),
                left=leavers,
                safety_code=self.safety_code,
                is_safety_code_changed=self.safety_code != previous_code,
            )
        )
        return "adds_me" if self.state is MemberState.WAITING else "keeps_me"

    def _check_commit_adding_me(self, view: CommitView, mine: RosterEntry) -> None:
        """Section 7.3, for a joiner: it is in the roster with its own keys and join, the
        committer signed, and the other joiners are authentic (and admitted)."""
        assert self._secrets is not None
        if (
            mine.identity != self._keys.sign_key
            or mine.sign_key != self._keys.sign_key
            or mine.seal_key != self._keys.seal_key
            or view.reason is CommitReason.UPDATE
        ):
            raise RoomProtocolError("bad_commit", "The commit adds this member with other keys.")
        me = next((j for j in view.joins if j.index == self.index), None)
        if me is None or me.nonce != self._challenge or me.profile != self._profile:
            raise RoomProtocolError("bad_commit", "The commit does not carry this member's join.")
        check_signature(view.entry(view.committer), view)
        # Earlier members' keys were checked by the members who let them in, but not by this
        # joiner: it will seal to them when it commits, so it checks them once now.
        if not all(is_valid_x25519_public_key(e.seal_key) for e in view.roster):
            raise RoomProtocolError("bad_commit", "The roster holds an unusable X25519 key.")
        if view.reason is CommitReason.FOUND:
            if view.committer != self.index or len(view.roster) != 1:
                raise RoomProtocolError("bad_commit", "Only a lone joiner founds an epoch.")
            # Keyed by the epoch base: any holder of both shards could make it, so it adds
            # nothing to room_auth here; it is checked so that every commit carries one.
            check_member_tag(self._epoch_base(), self.room_id, view)
            return
        # The joiner cannot check earlier membership; the safety code is how people compare.
        joined = {j.index for j in view.joins}
        admitters = [e for e in view.roster if e.index not in joined]
        check_joins(self._secrets, self.is_knock, view.joins, view.roster, admitters)

    def _check_commit_from_member(self, view: CommitView) -> None:
        """Section 7.3, for a member of the current epoch."""
        epoch = self._epoch
        assert epoch is not None
        assert self._secrets is not None
        if view.epoch != epoch.number + 1:
            raise RoomProtocolError("stale", "The commit is not for the next epoch.")
        if view.reason is CommitReason.FOUND:
            raise RoomProtocolError("bad_commit", "A founding commit in a room with members.")
        # Only members of this epoch hold its link: the relay, even with the room link and a
        # departed member's published signing seed, cannot commit in that member's name.
        assert self._epoch_link is not None
        check_member_tag(self._epoch_link, self.room_id, view)
        if view.committer in self._left:
            raise RoomProtocolError("bad_commit", "The committer has left the room.")
        if not (
            _equal(view.transcript, self._transcript) and _equal(view.membership, self._membership)
        ):
            raise RoomProtocolError("bad_commit", "The commit forks the room's transcript.")
        check_signature(epoch.entry(view.committer), view)
        if view.reason is CommitReason.UPDATE:
            check_update(epoch.roster, view)
        else:
            check_change(self._secrets, self.is_knock, epoch.roster, view, self._announced)
        check_sealed_to_all(view)

    # -- messages ---------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """Encrypt and sign a text message in the current epoch and queue it."""
        self._allowed("send")
        assert self._epoch is not None
        assert self.index is not None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RoomProtocolError("malformed", "The message is not valid Unicode.") from None
        body = _BODY_ENCODER.encode(_Body(text=text))
        if len(body) > MAX_BODY_BYTES:
            raise RoomProtocolError("too_large", "The message is too long.")
        key = self._epoch.chains.next_send_key()
        aad = message_aad(self.room_id, self._epoch.number, self.index, key.counter)
        ciphertext = encrypt_message(key, aad, body)
        signature = self._keys.sign(
            message_signing_input(
                self.room_id, self._epoch.number, self.index, key.counter, ciphertext
            )
        )
        self._undelivered.add((self._epoch.number, key.counter))
        self._send(
            Message(
                epoch=self._epoch.number,
                sender=self.index,
                counter=key.counter,
                ct=b64(ciphertext),
                sig=b64(signature),
            )
        )
        self._move("send")

    def _on_message(self, frame: RelayedMessage, events: list[MemberEvent]) -> None:
        if self.state is MemberState.WAITING:
            return  # not in any epoch yet: nothing to read
        assert self._epoch is not None
        holder = self._epoch if frame.epoch == self._epoch.number else self._previous
        if holder is None or holder.number != frame.epoch:
            raise RoomProtocolError("stale", "The message is for an epoch this member lacks.")
        sender = holder.entry(frame.sender)
        # A sender left out of the current epoch may not send late into the previous one, nor
        # may one the relay said left (its signing seeds are public).
        if sender is None or self._epoch.entry(frame.sender) is None or frame.sender in self._left:
            raise RoomProtocolError("bad_signature", "The sender is not a member.")
        ciphertext = unb64(frame.ct)
        signed = message_signing_input(
            self.room_id, frame.epoch, frame.sender, frame.counter, ciphertext
        )
        if not verify_signature(sender.sign_key, unb64(frame.sig), signed):
            raise RoomProtocolError("bad_signature", "The message is not signed by its sender.")
        try:
            key = holder.chains.receive_key(frame.sender, frame.counter)
        except MessageKeyUnavailable:
            raise RoomProtocolError("stale", "Replayed, too old or too far ahead.") from None
        aad = message_aad(self.room_id, frame.epoch, frame.sender, frame.counter)
        try:
            body = _BODY_DECODER.decode(decrypt_message(key, aad, ciphertext))
        except (DecryptionFailed, msgspec.DecodeError):
            raise RoomProtocolError("undecryptable", "The message does not open.") from None
        events.append(
            MessageReceived(
                sender=frame.sender,
                name=self._names.get(frame.sender, "?"),
                text=body.text,
                epoch=frame.epoch,
                counter=frame.counter,
            )
        )

    # -- leaving and ending ---------------------------------------------------------------

    def _send_leave(self) -> None:
        # The seeds are sealed under this epoch's link (section 11.4): the members of the
        # epoch can read them (deniability), the relay cannot sign with them. Without an
        # epoch this member signed nothing any member accepted, and publishes nothing.
        if self._epoch is None or self._epoch_link is None or self.index is None:
            self._send(Leave())
        else:
            # At most 64 fit in a frame (10.1): the newest, which signed the latest epochs.
            seeds = [*self._published_seeds, self._keys.signing_seed()][-MAX_PUBLISHED_SEEDS:]
            sealed = seal_published_seeds(
                self._epoch_link, self.room_id, self._epoch.number, self.index, seeds, self._random
            )
            self._send(Leave(epoch=self._epoch.number, sealed_seeds=b64(sealed)))
        self._wipe()

    def leave(self) -> None:
        """Leave: publish every signing seed this member used, sealed for the members of its
        epoch (deniability), and drop all keys."""
        self._allowed("leave")
        self._send_leave()
        self._move("leave")

    def end(self) -> None:
        """End the room now (creator link only): sign this connection's challenge."""
        self._allowed("end")
        if self.link.creator_secret is None or self._challenge is None:
            raise RoomProtocolError("unexpected", "Only the creator's link can end the room.")
        key = derive_proof_key(ProofKind.CREATOR, self.link.creator_secret, self.room_id)
        self._send(End(sig=b64(key.sign(end_proof_message(self.room_id, self._challenge)))))
        self._move("end")

    @property
    def _keys(self) -> MemberKeys:
        """This member's current key pairs; gone once it has left or been removed."""
        if self._held_keys is None:
            raise RoomProtocolError("unexpected", "This member has left: its keys are gone.")
        return self._held_keys

    @_keys.setter
    def _keys(self, keys: MemberKeys) -> None:
        self._held_keys = keys

    def _wipe(self) -> None:
        """Drop every secret this object holds (Python cannot zero memory; it can let go),
        the X25519 key too: with it and a commit the relay kept, a copy of this object
        would open that commit's epoch secret again, and every message of the epoch."""
        self._held_keys = None
        self._published_seeds = []
        self._secrets = None
        self._epoch = None
        self._previous = None
        self._epoch_link = None
        self._pending = None
        self._knocks.clear()
        self._left.clear()


def _is_sealable_name(name: str) -> bool:
    try:
        return len(name.encode("utf-8")) <= MAX_PROFILE_TEXT_BYTES
    except UnicodeEncodeError:
        return False


def _equal(a: bytes, b: bytes | None) -> bool:
    return b is not None and hmac.compare_digest(a, b)
