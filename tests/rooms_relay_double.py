"""An in-memory relay for room protocol tests (not the real relay: no network, no limits).

It follows what docs/protocol/rooms.md says the relay does with each frame (proof check,
S_relay release, sequencing, fan-out, change ordering, committer choice) closely enough to
drive `RoomMember`s through whole conversations, and it keeps everything it ever held and
saw (`self.seen`, `self.creation`) so tests can play a compromised relay. Hostile tests
override `deliver` (drop, repeat, reorder, alter) or inject frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.room_keys import (
    ProofKind,
    end_proof_message,
    join_proof_message,
    verify_signature,
)
from atopos.protocol.room_creation import RoomCreation
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import MemberEvent
from atopos.protocol.room_member import RoomMember
from atopos.protocol.room_wire import (
    Admit,
    Challenge,
    Change,
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
    RelayFrame,
    RosterItem,
    Sent,
    Unlock,
    Welcome,
    b64,
    decode_client_frame,
    encode_frame,
)


@dataclass
class Connection:
    member: RoomMember
    challenge: bytes
    kind: str | None = None
    index: int | None = None
    join: Join | None = None
    invite: str | None = None
    is_welcomed: bool = False
    is_closed: bool = False
    events: list[MemberEvent] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    errors: list[RoomProtocolError] = field(default_factory=list)


class RelayDouble:
    def __init__(self, creation: RoomCreation, random_bytes: Callable[[int], bytes]) -> None:
        self.creation = creation
        self.random_bytes = random_bytes
        self.room_id = b64url_decode(creation.room_id)
        self.invites = {invite.verifier: invite.sealed_link for invite in creation.invites}
        self.used_invites: set[str] = set()
        self.connections: list[Connection] = []
        self.seq = 0
        self.epoch = 0
        self.next_index = 0
        self.roster: dict[int, RosterItem] = {}  # members of the current epoch
        self.queued_joins: list[JoinItem] = []
        self.queued_leaves: list[int] = []
        self.knocks: dict[int, JoinItem] = {}
        self.pending: Change | None = None
        self.seen: list[str] = []  # every frame the relay received or sent
        self.fanned: list[str] = []  # every room frame (with seq), in order
        self.now = 0.0
        self.is_ended = False
        self.is_closing = False

    # -- plumbing -------------------------------------------------------------------------

    def connect(self, member: RoomMember) -> Connection:
        challenge = self.random_bytes(32)
        connection = Connection(member, challenge)
        self.connections.append(connection)
        self.send(connection, Challenge(v=1, nonce=b64(challenge)))
        return connection

    def deliver(self, connection: Connection, text: str) -> None:
        """Hand one frame to a member; hostile tests override this."""
        self.receive_at(connection, text)

    def receive_at(self, connection: Connection, text: str) -> None:
        if connection.is_closed:
            return
        connection.received.append(text)
        try:
            connection.events += connection.member.receive(text, self.now)
        except RoomProtocolError as error:
            connection.errors.append(error)

    def send(self, connection: Connection, frame: RelayFrame) -> None:
        text = encode_frame(frame)
        self.seen.append(text)
        self.deliver(connection, text)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def fan_out(self, make: Callable[[int], RelayFrame], skip: Connection | None = None) -> None:
        """One sequence number per room frame; every welcomed connection gets it."""
        seq = self.next_seq()
        frame = make(seq)
        text = encode_frame(frame)
        self.seen.append(text)
        self.fanned.append(text)
        for connection in self.welcomed():
            if connection is not skip:
                self.deliver(connection, text)

    def welcomed(self) -> list[Connection]:
        return [c for c in self.connections if c.is_welcomed and not c.is_closed]

    def pump(self, rounds: int = 50) -> None:
        """Move frames until nobody has anything left to send."""
        for _ in range(rounds):
            moved = False
            for connection in list(self.connections):
                if connection.is_closed:
                    continue
                for text in connection.member.outgoing():
                    moved = True
                    self.handle(connection, text)
            if not moved:
                return
        raise AssertionError("the room did not settle")

    def close(self, connection: Connection, code: str) -> None:
        if not connection.is_closed:
            self.send(connection, Error(code=code, message="closed"))  # type: ignore[arg-type]
            connection.is_closed = True

    # -- what the relay does with each member frame ----------------------------------------

    def handle(self, connection: Connection, text: str) -> None:
        self.seen.append(text)
        frame = decode_client_frame(text)
        match frame:
            case Prove():
                self.on_prove(connection, frame)
            case Join():
                self.on_join(connection, frame)
            case Commit():
                self.on_commit(connection, frame)
            case Message():
                self.fan_out(
                    lambda seq: RelayedMessage(
                        seq=seq,
                        epoch=frame.epoch,
                        sender=frame.sender,
                        counter=frame.counter,
                        ct=frame.ct,
                        sig=frame.sig,
                    ),
                    skip=connection,
                )
                # the fan-out took the last seq: tell the author which one
                self.send(
                    connection,
                    Sent(seq=self.seq, epoch=frame.epoch, counter=frame.counter),
                )
            case Admit():
                knock = self.knocks.pop(frame.index, None)
                if knock is not None and connection.index in self.roster:
                    self.queued_joins.append(
                        JoinItem(
                            index=knock.index,
                            sign_key=knock.sign_key,
                            seal_key=knock.seal_key,
                            nonce=knock.nonce,
                            auth=knock.auth,
                            profile=knock.profile,
                            admitted_by=connection.index,
                            admission=frame.sig,
                        )
                    )
                    self.schedule()
            case Refuse():
                self.on_refuse(frame.index)
            case Leave():
                self.on_leave(connection, frame)
            case End():
                message = end_proof_message(self.room_id, connection.challenge)
                verifier = b64url_decode(self.creation.creator_verifier)
                if verify_signature(verifier, b64url_decode(frame.sig), message):
                    self.end("creator")

    def on_prove(self, connection: Connection, frame: Prove) -> None:
        kind = ProofKind[frame.kind.upper()]
        message = join_proof_message(kind, self.room_id, connection.challenge)
        if kind is ProofKind.INVITE:
            if frame.key not in self.invites or frame.key in self.used_invites:
                self.close(connection, "bad_proof")
                return
            verifier = frame.key
        elif kind is ProofKind.CREATOR:
            verifier = self.creation.creator_verifier
        else:
            if self.creation.invite_only:
                self.close(connection, "bad_proof")
                return
            verifier = self.creation.join_verifier
        if frame.key != verifier or not verify_signature(
            b64url_decode(verifier), b64url_decode(frame.sig), message
        ):
            self.close(connection, "bad_proof")
            return
        sealed_link = None
        if kind is ProofKind.INVITE:
            self.used_invites.add(frame.key)  # burnt atomically with the release
            sealed_link = self.invites.pop(frame.key)
        connection.kind = frame.kind
        self.send(
            connection,
            Unlock(
                s_relay=self.creation.s_relay,
                knock=self.creation.knock,
                invite_only=self.creation.invite_only,
                expires_at=int(self.now) + self.creation.ttl,
                name=self.creation.name,
                sealed_link=sealed_link,
            ),
        )

    def on_join(self, connection: Connection, frame: Join) -> None:
        index = self.next_index
        self.next_index += 1
        connection.index = index
        connection.join = frame
        connection.is_welcomed = True
        self.send(connection, Welcome(seq=self.seq, index=index, epoch=self.epoch))
        item = JoinItem(
            index=index,
            sign_key=frame.sign_key,
            seal_key=frame.seal_key,
            nonce=b64(connection.challenge),
            auth=frame.auth,
            profile=frame.profile,
        )
        if self.creation.knock and self.roster:
            self.knocks[index] = item
            self.fan_out(
                lambda seq: Knock(
                    seq=seq,
                    index=index,
                    sign_key=item.sign_key,
                    seal_key=item.seal_key,
                    nonce=item.nonce,
                    auth=item.auth,
                    profile=item.profile,
                )
            )
            return
        self.queued_joins.append(item)
        self.schedule()

    def on_refuse(self, index: int) -> None:
        self.knocks.pop(index, None)
        self.queued_joins = [j for j in self.queued_joins if j.index != index]
        if self.pending is not None and any(j.index == index for j in self.pending.joins):
            self.pending = None
        for connection in self.connections:
            if connection.index == index and index not in self.roster:
                self.close(connection, "not_admitted")
        self.schedule()

    def on_leave(self, connection: Connection, leave: Leave | None) -> None:
        """A `leave` (its sealed seeds passed on unread), or a dropped connection (None)."""
        connection.is_closed = True
        index = connection.index
        if index is None:
            return
        published = (
            {} if leave is None else {"epoch": leave.epoch, "sealed_seeds": leave.sealed_seeds}
        )
        self.fan_out(lambda seq: Left(seq=seq, index=index, **published))
        if index in self.roster:
            self.queued_leaves.append(index)
        self.queued_joins = [j for j in self.queued_joins if j.index != index]
        if self.pending is not None:
            self.pending = None  # re-announce with the leave folded in
        self.schedule()

    def schedule(self) -> None:
        """Announce the next change unless one is waiting for its commit."""
        if self.pending is not None or self.is_ended or self.is_closing:
            return
        joins = list(self.queued_joins)
        leaves = [i for i in self.queued_leaves if i in self.roster]
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
        if staying:
            committer, reason = min(staying), "change"
        elif not joins:
            self.roster, self.queued_leaves = {}, []  # the room is empty now
            return
        else:
            joins = joins[:1]
            committer, reason = joins[0].index, "found"
            new_roster = {committer: new_roster[committer]}
        self.pending = Change(
            seq=0,
            epoch=self.epoch + 1,
            committer=committer,
            reason=reason,  # type: ignore[arg-type]
            roster=[new_roster[i] for i in sorted(new_roster)],
            joins=joins,
            leaves=leaves,
        )
        pending = self.pending
        self.fan_out(
            lambda seq: Change(
                seq=seq,
                epoch=pending.epoch,
                committer=pending.committer,
                reason=pending.reason,
                roster=pending.roster,
                joins=pending.joins,
                leaves=pending.leaves,
            )
        )

    def on_commit(self, connection: Connection, frame: Commit) -> None:
        # A stale commit is dropped, not answered with an error (which would close):
        # its author notices when the change or another commit for that epoch arrives.
        if frame.epoch != self.epoch + 1 or frame.committer != connection.index:
            return
        if frame.reason == "update":
            if self.pending is not None:
                return
        elif self.pending is None or self.pending.committer != frame.committer:
            return
        self.epoch = frame.epoch
        self.roster = {item.index: item for item in frame.roster}
        if frame.reason != "update":
            assert self.pending is not None
            done = {j.index for j in self.pending.joins}
            self.queued_joins = [j for j in self.queued_joins if j.index not in done]
            self.queued_leaves = [i for i in self.queued_leaves if i not in self.pending.leaves]
            self.pending = None
        self.fan_out(
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
            )
        )
        self.schedule()

    def end(self, reason: str, grace: bool = True) -> None:
        self.is_closing = True
        if grace:
            self.fan_out(lambda seq: Closing(seq=seq, seconds=5, reason=reason))  # type: ignore[arg-type]
            self.pump()
        self.is_ended = True
        for connection in self.welcomed():
            self.send(connection, Ended(reason=reason))  # type: ignore[arg-type]
            connection.is_closed = True
