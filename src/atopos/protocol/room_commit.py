"""Commits, sans-I/O (docs/protocol/rooms.md, section 7): building one, and the checks a
member runs on one before it takes the new epoch. The member state machine
(`room_member.py`) decides *when*; this module says *what* a valid commit is.

Every check raises `RoomProtocolError` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from atopos.crypto.device import is_valid_ed25519_public_key, is_valid_x25519_public_key
from atopos.crypto.randomness import RandomBytes, draw
from atopos.crypto.room_keys import (
    SECRET_BYTES,
    MemberKeys,
    RoomSecrets,
    derive_epoch_secret,
    member_auth_message,
    member_auth_tag,
    verify_member_auth,
    verify_signature,
)
from atopos.crypto.room_roster import RosterEntry, roster_hash
from atopos.crypto.room_seal import seal_aad, seal_secret
from atopos.crypto.room_transcript import (
    CommitReason,
    JoinEvidence,
    SealedEntry,
    admission_message,
    commit_auth_message,
    commit_signing_input,
    confirm_tag,
    joins_hash,
    member_tag,
    sealed_hash,
    transcript_after,
    verify_member_tag,
)
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_wire import (
    Change,
    Commit,
    JoinItem,
    RelayedCommit,
    RosterItem,
    SealedItem,
    b64,
    unb64,
)

__all__ = [
    "REASONS",
    "BuiltCommit",
    "CommitView",
    "build_commit",
    "check_change",
    "check_joins",
    "check_member_tag",
    "check_room_auth",
    "check_sealed_to_all",
    "check_signature",
    "check_update",
    "join_from_wire",
    "joiner_is_authentic",
    "read_commit",
    "roster_from_wire",
    "roster_to_wire",
]

REASONS = {
    "found": CommitReason.FOUND,
    "change": CommitReason.CHANGE,
    "update": CommitReason.UPDATE,
}
_REASON_NAMES = {value: key for key, value in REASONS.items()}


# -- wire <-> crypto values -----------------------------------------------------------------


def roster_from_wire(items: list[RosterItem]) -> list[RosterEntry]:
    roster = [
        RosterEntry(
            item.index,
            unb64(item.identity),
            unb64(item.sign_key),
            unb64(item.seal_key),
            unb64(item.profile),
        )
        for item in items
    ]
    indices = [entry.index for entry in roster]
    if indices != sorted(set(indices)):
        raise RoomProtocolError("bad_commit", "The roster is not sorted by index.")
    return roster


def roster_to_wire(roster: list[RosterEntry]) -> list[RosterItem]:
    return [
        RosterItem(
            index=e.index,
            identity=b64(e.identity),
            sign_key=b64(e.sign_key),
            seal_key=b64(e.seal_key),
            profile=b64(e.profile),
        )
        for e in roster
    ]


def join_from_wire(item: JoinItem) -> JoinEvidence:
    return JoinEvidence(
        index=item.index,
        sign_key=unb64(item.sign_key),
        seal_key=unb64(item.seal_key),
        nonce=unb64(item.nonce),
        auth=unb64(item.auth),
        profile=unb64(item.profile),
        admitted_by=item.admitted_by,
        admission=None if item.admission is None else unb64(item.admission),
    )


def _join_to_wire(join: JoinEvidence) -> JoinItem:
    return JoinItem(
        index=join.index,
        sign_key=b64(join.sign_key),
        seal_key=b64(join.seal_key),
        nonce=b64(join.nonce),
        auth=b64(join.auth),
        profile=b64(join.profile),
        admitted_by=join.admitted_by,
        admission=None if join.admission is None else b64(join.admission),
    )


@dataclass(frozen=True, slots=True)
class CommitView:
    """A relayed commit as crypto values, with the signing input it claims."""

    epoch: int
    committer: int
    reason: CommitReason
    roster: list[RosterEntry]
    joins: list[JoinEvidence]
    sealed: list[SealedEntry]
    transcript: bytes
    membership: bytes
    roster_digest: bytes
    signing_input: bytes
    room_auth: bytes
    member_tag: bytes
    confirm: bytes
    sig: bytes

    def entry(self, index: int) -> RosterEntry | None:
        return next((e for e in self.roster if e.index == index), None)

    def sealed_to(self, index: int) -> SealedEntry | None:
        return next((s for s in self.sealed if s.index == index), None)


def read_commit(room_id: bytes, frame: RelayedCommit) -> CommitView:
    reason = REASONS[frame.reason]
    roster = roster_from_wire(frame.roster)
    joins = [join_from_wire(item) for item in frame.joins]
    sealed = [
        SealedEntry(item.index, unb64(item.ephemeral), unb64(item.secret)) for item in frame.sealed
    ]
    transcript, membership = unb64(frame.transcript), unb64(frame.membership)
    digest = roster_hash(roster)
    signing_input = commit_signing_input(
        room_id,
        frame.epoch,
        frame.committer,
        reason,
        transcript,
        membership,
        digest,
        joins_hash(joins),
        sealed_hash(sealed),
    )
    return CommitView(
        epoch=frame.epoch,
        committer=frame.committer,
        reason=reason,
        roster=roster,
        joins=joins,
        sealed=sealed,
        transcript=transcript,
        membership=membership,
        roster_digest=digest,
        signing_input=signing_input,
        room_auth=unb64(frame.room_auth),
        member_tag=unb64(frame.member_tag),
        confirm=unb64(frame.confirm),
        sig=unb64(frame.sig),
    )


# -- building ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuiltCommit:
    frame: Commit
    signing_input: bytes
    epoch_secret: bytes


def build_commit(
    *,
    secrets: RoomSecrets,
    committer: int,
    epoch: int,
    reason: CommitReason,
    roster: list[RosterEntry],
    joins: list[JoinEvidence],
    previous_link: bytes,
    transcript: bytes,
    membership: bytes,
    signer: MemberKeys,
    random_bytes: RandomBytes,
) -> BuiltCommit:
    """Sections 7.1-7.2: a fresh epoch secret sealed to every member but the committer, in
    index order, signed, MACed with the member-auth key, tagged with the previous epoch's
    link (`previous_link`: the epoch base for a founding commit) and confirmed."""
    room_id = secrets.room_id
    digest = roster_hash(roster)
    fresh = draw(random_bytes, SECRET_BYTES)
    epoch_secret = derive_epoch_secret(previous_link, fresh, room_id, epoch, digest)
    sealed: list[SealedEntry] = []
    for entry in roster:
        if entry.index == committer:
            continue
        ephemeral, box = seal_secret(
            entry.seal_key,
            epoch_secret,
            draw(random_bytes, SECRET_BYTES),
            seal_aad(room_id, epoch, entry.index, digest),
        )
        sealed.append(SealedEntry(entry.index, ephemeral, box))
    signing_input = commit_signing_input(
        room_id,
        epoch,
        committer,
        reason,
        transcript,
        membership,
        digest,
        joins_hash(joins),
        sealed_hash(sealed),
    )
    frame = Commit(
        epoch=epoch,
        committer=committer,
        reason=_REASON_NAMES[reason],  # type: ignore[arg-type]
        transcript=b64(transcript),
        membership=b64(membership),
        roster=roster_to_wire(roster),
        joins=[_join_to_wire(j) for j in joins],
        sealed=[
            SealedItem(index=s.index, ephemeral=b64(s.ephemeral), secret=b64(s.sealed))
            for s in sealed
        ],
        room_auth=b64(member_auth_tag(secrets, commit_auth_message(signing_input))),
        member_tag=b64(member_tag(previous_link, room_id, signing_input)),
        confirm=b64(confirm_tag(epoch_secret, room_id, transcript_after(signing_input))),
        sig=b64(signer.sign(signing_input)),
    )
    return BuiltCommit(frame, signing_input, epoch_secret)


# -- checking ---------------------------------------------------------------------------------


def joiner_is_authentic(secrets: RoomSecrets, join: JoinEvidence) -> bool:
    """Usable keys and a member-auth tag only holders of both shards can make (4.6)."""
    if not (
        is_valid_ed25519_public_key(join.sign_key) and is_valid_x25519_public_key(join.seal_key)
    ):
        return False
    message = member_auth_message(
        secrets.room_id, join.nonce, join.sign_key, join.seal_key, join.profile
    )
    return verify_member_auth(secrets, message, join.auth)


def check_joins(
    secrets: RoomSecrets,
    is_knock: bool,
    joins: list[JoinEvidence],
    roster: list[RosterEntry],
    admitters: list[RosterEntry],
) -> None:
    """Each joiner is in the roster as announced, proved the room secret and (knock mode)
    was admitted by one of `admitters` other than itself."""
    for join in joins:
        entry = next((e for e in roster if e.index == join.index), None)
        if (
            entry is None
            or entry.identity != join.sign_key
            or entry.sign_key != join.sign_key
            or entry.seal_key != join.seal_key
            or entry.profile != join.profile
        ):
            raise RoomProtocolError("bad_commit", "A joiner is not in the roster as announced.")
        if not joiner_is_authentic(secrets, join):
            raise RoomProtocolError("bad_auth", "A joiner did not prove the room secret.")
        if is_knock:
            admitter = next((e for e in admitters if e.index == join.admitted_by), None)
            message = admission_message(
                secrets.room_id, join.index, join.nonce, join.sign_key, join.seal_key
            )
            if (
                admitter is None
                or admitter.index == join.index
                or join.admission is None
                or not verify_signature(admitter.sign_key, join.admission, message)
            ):
                raise RoomProtocolError("not_admitted", "A joiner was not admitted.")


def check_update(current: list[RosterEntry], view: CommitView) -> None:
    """An update changes only its committer's two keys, to usable ones, and adds no one."""
    expected = [
        RosterEntry(e.index, e.identity, n.sign_key, n.seal_key, e.profile)
        if e.index == view.committer
        else e
        for e, n in zip(current, view.roster, strict=False)
    ]
    if view.joins or len(view.roster) != len(current) or view.roster != expected:
        raise RoomProtocolError("bad_commit", "An update may change only its own keys.")
    new = view.entry(view.committer)
    if new is None or not (
        is_valid_ed25519_public_key(new.sign_key) and is_valid_x25519_public_key(new.seal_key)
    ):
        raise RoomProtocolError("bad_commit", "An update brings unusable keys.")


def check_change(
    secrets: RoomSecrets,
    is_knock: bool,
    current: list[RosterEntry],
    view: CommitView,
    announced: Change | None,
) -> None:
    """A change commit is the relay's announcement, keeps every staying member's entry as
    it was, adds only new and authentic joiners, and seals to everyone but its author."""
    if (
        announced is None
        or announced.epoch != view.epoch
        or announced.committer != view.committer
        or roster_from_wire(announced.roster) != view.roster
        or [join_from_wire(j) for j in announced.joins] != view.joins
    ):
        raise RoomProtocolError("bad_commit", "The commit is not the announced change.")
    joined = {j.index for j in view.joins}
    old = {e.index: e for e in current}
    for entry in view.roster:
        if entry.index not in joined and old.get(entry.index) != entry:
            raise RoomProtocolError("bad_commit", "The commit changes a member's keys.")
        if entry.index in joined and entry.index in old:
            raise RoomProtocolError("bad_commit", "A joiner is already a member.")
    check_joins(secrets, is_knock, view.joins, view.roster, current)


def check_sealed_to_all(view: CommitView) -> None:
    expected = [e.index for e in view.roster if e.index != view.committer]
    if [s.index for s in view.sealed] != expected:
        raise RoomProtocolError("bad_commit", "The commit does not seal to every member.")


def check_signature(signer: RosterEntry | None, view: CommitView) -> None:
    if signer is None or not verify_signature(signer.sign_key, view.sig, view.signing_input):
        raise RoomProtocolError("bad_signature", "The commit is not signed by its committer.")


def check_room_auth(secrets: RoomSecrets, view: CommitView) -> None:
    if not verify_member_auth(secrets, commit_auth_message(view.signing_input), view.room_auth):
        raise RoomProtocolError("bad_auth", "The commit was not made by a room member.")


def check_member_tag(previous_link: bytes, room_id: bytes, view: CommitView) -> None:
    """Section 7.3 step 3: made by a member of the previous epoch (who holds its epoch link),
    not by the relay with a link and a departed member's published signing seed."""
    if not verify_member_tag(previous_link, room_id, view.signing_input, view.member_tag):
        raise RoomProtocolError("bad_auth", "The commit was not made by a member of this epoch.")
