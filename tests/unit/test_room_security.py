"""Issue 17's crypto acceptance points at the protocol level (no network): forward secrecy,
post-compromise security, leaving, a relay holding everything, knock mode, invites and
deniability. The attacker (tests/rooms_support.py) tries every byte string a snapshot holds
as an epoch secret, chain key and key material, every key pair against every seal, and every
held chain at every counter."""

from __future__ import annotations

import copy

import pytest
from tests.rooms_support import (
    chains_of,
    frames_after,
    held_values,
    open_room,
    read_with,
    refused,
)

from atopos.crypto.base64url import b64url_decode
from atopos.crypto.errors import DecryptionFailed
from atopos.crypto.room_keys import MemberKeys, open_invite_link
from atopos.crypto.room_message import decrypt_message, encrypt_message, message_aad
from atopos.crypto.room_published_seeds import open_published_seeds
from atopos.crypto.room_ratchet import EpochChains
from atopos.crypto.room_transcript import message_signing_input
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import (
    EpochStarted,
    MessageReceived,
    RelayError,
    RemovedFromRoom,
)
from atopos.protocol.room_member import MemberState
from atopos.protocol.room_wire import (
    Commit,
    Leave,
    Left,
    Message,
    Refuse,
    RelayedCommit,
    RelayedMessage,
    b64,
    decode_client_frame,
    decode_relay_frame,
    encode_frame,
)


def _snapshot(room, name):  # type: ignore[no-untyped-def]
    member = room.members[name].member
    return copy.deepcopy(member), member._last_seq


def _attack(room, snapshot, seq):  # type: ignore[no-untyped-def]
    values, keys = held_values(snapshot)
    frames = frames_after(room.relay, seq)
    return read_with(
        values, keys, frames, room.new.creation and snapshot.room_id, chains_of(snapshot)
    )


def test_the_attacker_reads_with_a_live_state() -> None:
    # The attack must work when it should: a snapshot taken *before* a message opens it.
    room = open_room("alice", "bob", "carol")
    snapshot, seq = _snapshot(room, "carol")
    room.say("alice", "visible to a current member")
    assert any("visible to a current member" in text for text in _attack(room, snapshot, seq))


def test_a_saved_state_reads_nothing_sent_after_its_member_left() -> None:
    room = open_room("alice", "bob", "carol")
    room.say("alice", "before")
    snapshot, seq = _snapshot(room, "carol")
    room.members["carol"].member.leave()
    room.relay.pump()
    room.say("alice", "after carol left")
    room.say("bob", "also after")
    assert room.texts("bob")[-1] == (0, "after carol left")
    assert _attack(room, snapshot, seq) == []
    # and the snapshot, run as a member, is removed by the next commit and reads nothing
    events = []
    for text in frames_after(room.relay, seq):
        if snapshot.state is MemberState.CLOSED:
            break
        events += snapshot.receive(text, 0)
    assert any(isinstance(e, RemovedFromRoom) for e in events)
    assert not [e for e in events if isinstance(e, MessageReceived)]


def test_a_snapshot_after_message_n_cannot_decrypt_messages_up_to_n() -> None:
    room = open_room("alice", "bob")
    for number in range(5):
        room.say("alice", f"message {number}")
    assert len(room.texts("bob")) == 5
    seq_before = 0
    snapshot, _ = _snapshot(room, "bob")
    frames = [t for t in frames_after(room.relay, seq_before) if '"t":"msg"' in t]
    assert len(frames) == 5
    values, keys = held_values(snapshot)
    assert read_with(values, keys, frames, snapshot.room_id, chains_of(snapshot)) == []


def test_a_copy_taken_after_leave_opens_nothing_even_with_every_frame() -> None:
    """After `leave` the member holds no X25519 key: with it, a copy plus the commit the
    relay kept would open the epoch secret again, and every message of the epoch."""
    room = open_room("alice", "bob")
    for number in range(3):
        room.say("alice", f"secret {number}")
    bob = room.members["bob"].member
    bob.leave()
    room.relay.pump()
    seized = copy.deepcopy(bob)
    values, keys = held_values(seized)
    assert keys == []
    frames = list(room.relay.fanned)
    assert any('"t":"commit"' in t for t in frames)
    assert any('"t":"msg"' in t for t in frames)
    assert read_with(values, keys, frames, seized.room_id, chains_of(seized)) == []


def test_within_an_epoch_a_copy_and_the_commit_open_the_epoch_until_a_self_update() -> None:
    """What rooms.md section 14 no longer claims: the X25519 key that opened an epoch's
    commit is kept until the member's next self-update, so a copy of the member's state
    plus the commit (the relay has it) opens that epoch's messages, read ones included. A
    copy taken after the self-update does not open them."""
    room = open_room("alice", "bob")
    for number in range(3):
        room.say("alice", f"secret {number}")
    frames = list(room.relay.fanned)
    during, _ = _snapshot(room, "bob")
    values, keys = held_values(during)
    assert len(read_with(values, keys, frames, during.room_id, chains_of(during))) == 3
    room.members["bob"].member.update(0)
    room.relay.pump()
    after, _ = _snapshot(room, "bob")
    values, keys = held_values(after)
    assert read_with(values, keys, frames, after.room_id, chains_of(after)) == []


def test_out_of_order_keys_are_kept_only_until_used() -> None:
    room = open_room("alice", "bob")
    held: list[str] = []
    original = room.relay.deliver

    def hold_first(connection, text):  # type: ignore[no-untyped-def]
        if '"t":"msg"' in text and not held:
            held.append(text)
            return
        original(connection, text)

    room.relay.deliver = hold_first  # type: ignore[method-assign]
    room.say("alice", "first")
    room.relay.deliver = original  # type: ignore[method-assign]
    room.say("alice", "second")
    # bob skipped counter 0: a snapshot now still opens it (it must, to read it late)...
    snapshot, _ = _snapshot(room, "bob")
    values, keys = held_values(snapshot)
    opened = read_with(values, keys, held, snapshot.room_id, chains_of(snapshot))
    assert opened
    assert all('"first"' in text for text in opened)


def test_a_snapshot_before_a_self_update_reads_nothing_after_it() -> None:
    room = open_room("alice", "bob", "carol")
    snapshot, seq = _snapshot(room, "bob")
    room.members["bob"].member.update(0)
    room.relay.pump()
    assert room.members["alice"].member.epoch == snapshot.epoch + 1
    room.say("alice", "after bob re-keyed")
    room.say("carol", "me too")
    assert room.texts("bob")[-2:] == [(0, "after bob re-keyed"), (2, "me too")]
    assert _attack(room, snapshot, seq) == []
    # A later change seals to bob's new key, which the snapshot lacks.
    room.join("dave")
    room.say("alice", "after dave")
    assert _attack(room, snapshot, seq) == []


def test_with_everything_the_relay_holds_and_no_link_nothing_decrypts() -> None:
    room = open_room("alice", "bob", "carol", invites=2)
    room.say("alice", "secret plans")
    room.members["bob"].member.update(0)
    room.relay.pump()
    room.say("bob", "more plans")
    values, keys = held_values(room.relay.creation, room.relay.seen, room.relay.invites)
    assert keys == []
    assert read_with(values, keys, room.relay.fanned, room.members["alice"].member.room_id) == []
    # Not even the metadata: the room name and display names need S_link.
    assert "Plans" not in str(room.relay.seen)


def test_knock_an_unadmitted_joiner_gets_no_epoch_secret() -> None:
    room = open_room("alice", "bob", knock=True)
    assert room.members["bob"].member.state is MemberState.WAITING  # nobody admitted bob yet
    knocks = [e for e in room.members["alice"].events if type(e).__name__ == "JoinRequested"]
    assert [(k.index, k.name) for k in knocks] == [(1, "bob")]
    room.say("alice", "not for bob")
    snapshot, _ = _snapshot(room, "bob")
    values, keys = held_values(snapshot)
    assert read_with(values, keys, room.relay.fanned, snapshot.room_id, chains_of(snapshot)) == []
    assert room.texts("bob") == []
    # Refused: the relay closes bob's connection; admitted: bob reads from then on.
    room.members["alice"].member.admit(1)
    room.relay.pump()
    assert room.members["bob"].member.state is MemberState.ACTIVE
    room.say("alice", "welcome bob")
    assert room.texts("bob") == [(0, "welcome bob")]


def test_knock_refused_joiner_is_closed() -> None:
    room = open_room("alice", "mallory", knock=True)
    room.members["alice"].member.refuse(1)
    room.relay.pump()
    assert room.members["mallory"].member.state is MemberState.CLOSED
    assert room.members["alice"].member.members == ((0, "alice"),)


def test_an_invite_is_single_use_and_worthless_once_burnt() -> None:
    room = open_room("alice", invites=1, invite_only=True)
    invite = room.new.invite_links[0]
    first = room.join("bob", invite)
    assert first.member.state is MemberState.ACTIVE
    second = room.join("eve", invite)
    assert second.member.state is MemberState.CLOSED
    assert [type(e).__name__ for e in second.events] == ["RelayError"]
    # The member link is refused too in an invite-only room.
    third = room.join("trent", room.new.member_link)
    assert third.member.state is MemberState.CLOSED
    # With I and everything the relay holds after the burn, S_link stays out of reach.
    assert invite.invite_secret is not None
    values, _ = held_values(
        room.relay.creation.s_relay, room.relay.invites, room.relay.used_invites
    )
    for value in values:
        try:
            open_invite_link(invite.invite_secret, invite.room_id, value)
        except DecryptionFailed:
            continue
        raise AssertionError("a burnt invite opened something")


def test_deniability_a_forger_with_published_keys_makes_an_equally_valid_transcript() -> None:
    room = open_room("alice", "bob", "carol")
    # What carol had at the start of the epoch (any member had this much).
    carol_view = copy.deepcopy(room.members["carol"].member)
    verifier = copy.deepcopy(room.members["carol"].member)
    seq = verifier._last_seq
    room.say("bob", "I propose we meet at noon")
    real = [t for t in frames_after(room.relay, seq) if '"t":"msg"' in t]
    room.relay.end("creator")
    published = {
        frame.index: frame
        for frame in map(decode_relay_frame, room.relay.fanned)
        if isinstance(frame, Left)
    }
    assert set(published) == {0, 1, 2}  # every member published its signing keys
    # They are sealed under the epoch link (rooms.md 11.4), which carol's view holds: it
    # opens every member's seeds.
    assert carol_view._epoch_link is not None
    seeds = {
        index: open_published_seeds(
            carol_view._epoch_link,
            carol_view.room_id,
            frame.epoch,  # type: ignore[arg-type]
            index,
            b64url_decode(frame.sealed_seeds),  # type: ignore[arg-type]
        )
        for index, frame in published.items()
    }
    # The forger writes a different message "from bob" with carol's view and bob's seed.
    real_frame = decode_relay_frame(real[0])
    assert isinstance(real_frame, RelayedMessage)
    bob_seed = seeds[1][-1]
    forger_keys = MemberKeys(bob_seed, bytes(32))
    key = carol_view._epoch.chains.receive_key(1, 0)
    aad = message_aad(carol_view.room_id, real_frame.epoch, 1, 0)
    body = b'{"type":"text","text":"I never said noon"}'
    ciphertext = encrypt_message(key, aad, body)
    signature = forger_keys.sign(
        message_signing_input(carol_view.room_id, real_frame.epoch, 1, 0, ciphertext)
    )
    forged = RelayedMessage(
        seq=real_frame.seq,
        epoch=real_frame.epoch,
        sender=1,
        counter=0,
        ct=b64(ciphertext),
        sig=b64(signature),
    )
    # Replay the real transcript and the forged one (the message swapped) into two copies
    # of a member as it was before: the same frames verify, the same events come out.
    real_transcript = frames_after(room.relay, seq)
    forged_transcript = [encode_frame(forged) if t == real[0] else t for t in real_transcript]
    assert forged_transcript != real_transcript
    outcomes = []
    for transcript in (real_transcript, forged_transcript):
        member = copy.deepcopy(verifier)
        events = []
        for text in transcript:
            events += member.receive(text, 0)
        outcomes.append(events)
    real_events, forged_events = outcomes
    assert [type(e) for e in real_events] == [type(e) for e in forged_events]
    real_texts = [(e.sender, e.text) for e in real_events if isinstance(e, MessageReceived)]
    forged_texts = [(e.sender, e.text) for e in forged_events if isinstance(e, MessageReceived)]
    assert real_texts == [(1, "I propose we meet at noon")]
    assert forged_texts == [(1, "I never said noon")]


def test_safety_code_is_shared_and_changes_only_with_membership() -> None:
    room = open_room("alice", "bob", "carol")
    codes = {c.member.safety_code for c in room.members.values()}
    assert len(codes) == 1
    before = codes.pop()
    room.members["alice"].member.update(0)
    room.relay.pump()
    assert {c.member.safety_code for c in room.members.values()} == {before}
    room.join("dave")
    after = {c.member.safety_code for c in room.members.values()}
    assert len(after) == 1
    assert before not in after
    started = [e for e in room.members["bob"].events if isinstance(e, EpochStarted)]
    assert started[-1].is_safety_code_changed
    assert not started[-2].is_safety_code_changed


def test_a_relay_cannot_switch_knock_mode_off() -> None:
    import msgspec
    from tests.rooms_relay_double import RelayDouble
    from tests.rooms_support import SeededRandom, refused

    room = open_room("alice", knock=True, label="mode")
    # the same room on a relay that reports knock mode off, so nobody would need admission
    lying = msgspec.structs.replace(room.relay.creation, knock=False)
    relay = RelayDouble(lying, SeededRandom("lying relay"))
    from atopos.protocol.room_member import RoomMember

    joiner = relay.connect(RoomMember(room.new.member_link, "mallory", SeededRandom("m")))
    relay.pump()
    assert refused(joiner) == ["undecryptable"]
    assert joiner.member.state is not MemberState.ACTIVE
    assert joiner.member.outgoing() == []  # it sends no join into a room it cannot trust


def _forge_update_in_the_name_of(room, index, seed):  # type: ignore[no-untyped-def]
    """What a relay holding the room link (hence member_auth_key) makes from a departed
    member's published signing seed: an update in its name that swaps in the relay's own
    X25519 key and seals an epoch secret of the relay's choosing to everyone else. It has
    every value a member checks except epoch_link[n-1], so its member tag is a guess."""
    from tests.rooms_support import SeededRandom

    from atopos.crypto.room_keys import derive_room_secrets
    from atopos.crypto.room_roster import RosterEntry
    from atopos.crypto.room_transcript import CommitReason, membership_after, transcript_after
    from atopos.protocol.room_commit import build_commit, read_commit
    from atopos.protocol.room_wire import RelayedCommit

    relay = room.relay
    secrets = derive_room_secrets(
        room.new.member_link.s_link, b64url_decode(relay.creation.s_relay), relay.room_id
    )
    last = [f for f in map(decode_relay_frame, relay.fanned) if isinstance(f, RelayedCommit)][-1]
    view = read_commit(relay.room_id, last)
    mine = MemberKeys.generate(SeededRandom("relay's own keys"))
    roster = [
        RosterEntry(e.index, e.identity, mine.sign_key, mine.seal_key, e.profile)
        if e.index == index
        else e
        for e in view.roster
    ]
    built = build_commit(
        secrets=secrets,
        committer=index,
        epoch=view.epoch + 1,
        reason=CommitReason.UPDATE,
        roster=roster,
        joins=[],
        previous_link=secrets.epoch_base,  # its best guess: the one link it can derive
        transcript=transcript_after(view.signing_input),
        membership=membership_after(view.membership, view.reason, view.epoch, view.roster),
        signer=MemberKeys(seed, bytes(32)),
        random_bytes=SeededRandom("relay's epoch"),
    )
    fields = {f: getattr(built.frame, f) for f in built.frame.__struct_fields__}
    relay.fan_out(lambda seq: RelayedCommit(seq=seq, **fields))
    return built


def test_a_relay_with_the_link_cannot_take_over_a_departed_members_seat() -> None:
    # Server compromise + a leaked link (rooms.md 14): carol leaves; the relay keeps her
    # leave (and `left`) from the others and commits an update in her name. Her `leave`
    # seals her seed (11.4), so the relay does not have it; it is taken from carol here, to
    # show that the member tag (7.2) holds on its own. Without it, alice and bob would take
    # that epoch, whose secret the relay chose, with the same safety code, and the relay
    # would read on.
    room = open_room("alice", "bob", "carol")
    alice, bob, carol = (room.members[n] for n in ("alice", "bob", "carol"))
    epoch, code = alice.member.epoch, alice.member.safety_code
    seed = carol.member._keys.signing_seed()
    carol.member.leave()
    (leave_text,) = carol.member.outgoing()  # the relay withholds it
    carol.is_closed = True
    assert isinstance(decode_client_frame(leave_text), Leave)
    built = _forge_update_in_the_name_of(room, carol.index, seed)
    for victim in (alice, bob):
        assert [error.code for error in victim.errors] == ["bad_auth"]
        assert victim.member.epoch == epoch
        assert victim.member.safety_code == code
        assert victim.member.state is MemberState.ACTIVE
        assert not [e for e in victim.events if isinstance(e, EpochStarted) and e.epoch > epoch]
    room.say("alice", "only for alice and bob")
    assert room.texts("bob")[-1] == (0, "only for alice and bob")
    # Nothing the relay chose opens what alice sent next: it is still in the old epoch.
    chains = EpochChains(
        built.epoch_secret, room.relay.room_id, built.frame.epoch, [0, 1, 2], carol.index
    )
    messages = [
        frame
        for frame in map(decode_relay_frame, room.relay.fanned)
        if isinstance(frame, RelayedMessage) and frame.sender == 0
    ]
    assert messages[-1].epoch == epoch
    for frame in messages:
        key = chains.receive_key(frame.sender, frame.counter)
        aad = message_aad(room.relay.room_id, frame.epoch, frame.sender, frame.counter)
        with pytest.raises(DecryptionFailed):
            decrypt_message(key, aad, b64url_decode(frame.ct))


def test_a_member_refuses_commits_and_messages_from_someone_it_saw_leave() -> None:
    # Defence in depth: a departed member (or whoever holds a copy of its state) that the
    # relay lets back in after its `left` is refused, even with a valid member tag.
    room = open_room("alice", "bob", "carol")
    alice, bob, carol = (room.members[n] for n in ("alice", "bob", "carol"))
    epoch = alice.member.epoch
    ghost = copy.deepcopy(carol.member)
    carol.member.leave()
    (leave_text,) = carol.member.outgoing()
    carol.is_closed = True
    leave = decode_client_frame(leave_text)
    assert isinstance(leave, Leave)
    # the relay fans out `left` but schedules nothing yet
    room.relay.fan_out(
        lambda seq: Left(
            seq=seq, index=carol.index, epoch=leave.epoch, sealed_seeds=leave.sealed_seeds
        )
    )
    ghost.send_text("still here")
    ghost.update(0)
    message_text, commit_text = ghost.outgoing()
    message, commit = decode_client_frame(message_text), decode_client_frame(commit_text)
    assert isinstance(message, Message)
    assert isinstance(commit, Commit)
    message_fields = {f: getattr(message, f) for f in message.__struct_fields__}
    room.relay.fan_out(lambda seq: RelayedMessage(seq=seq, **message_fields))
    commit_fields = {f: getattr(commit, f) for f in commit.__struct_fields__}
    room.relay.fan_out(lambda seq: RelayedCommit(seq=seq, **commit_fields))
    for victim in (alice, bob):
        assert [error.code for error in victim.errors] == ["bad_signature", "bad_commit"]
        assert victim.member.epoch == epoch
        assert not [e for e in victim.events if isinstance(e, MessageReceived)]


def _knock_room_whose_carol_left(label: str):  # type: ignore[no-untyped-def]
    """A knock-mode room of alice, bob and carol (each admitted by alice); carol leaves and
    the relay withholds her `leave` (so no `left`: alice and bob still count her in); then
    mallory, who holds the room link, knocks. Returns the room, carol's signing seed (taken
    from her state before she left) and her `leave` frame."""
    room = open_room("alice", knock=True, label=label)
    for name in ("bob", "carol"):
        joiner = room.join(name)
        room.members["alice"].member.admit(joiner.index)
        room.relay.pump()
        assert joiner.member.state is MemberState.ACTIVE
    carol = room.members["carol"]
    seed = carol.member._keys.signing_seed()  # carol made no update: her one seed
    carol.member.leave()
    (leave_text,) = carol.member.outgoing()  # withheld by the relay
    carol.is_closed = True
    mallory = room.join("mallory")
    assert mallory.member.state is MemberState.WAITING
    return room, seed, leave_text


def _forge_admission(room, admitted_by: int, seed: bytes) -> None:  # type: ignore[no-untyped-def]
    """The relay turns mallory's knock into a join admitted by `admitted_by`, with an
    admission (11.3) signed by `seed`, and announces the change."""
    import msgspec

    from atopos.crypto.room_transcript import admission_message

    relay = room.relay
    knock = relay.knocks.pop(room.members["mallory"].index)
    message = admission_message(
        relay.room_id,
        knock.index,
        b64url_decode(knock.nonce),
        b64url_decode(knock.sign_key),
        b64url_decode(knock.seal_key),
    )
    signature = MemberKeys(seed, bytes(32)).sign(message)
    relay.queued_joins.append(
        msgspec.structs.replace(knock, admitted_by=admitted_by, admission=b64(signature))
    )
    relay.schedule()
    relay.pump()


def test_a_departed_members_seed_admits_a_link_holder_when_the_relay_has_it() -> None:
    # The capability the leave used to hand the relay (rooms.md 14, 18): with carol's seed
    # and her `left` withheld, a relay holding the link admits mallory in knock mode
    # without any member's consent. Before the fix her `leave` carried this very seed in
    # the clear (`signing_keys`); the next test shows it no longer yields it.
    room, seed, _ = _knock_room_whose_carol_left("admission with the seed")
    carol_index = room.members["carol"].index
    _forge_admission(room, carol_index, seed)
    mallory = room.members["mallory"].member
    assert mallory.state is MemberState.ACTIVE
    for name in ("alice", "bob"):
        member = room.members[name].member
        assert room.members[name].errors == []
        assert (mallory.index, "mallory") in member.members
        assert member.safety_code == mallory.safety_code  # a join the others cannot tell


def test_a_relay_with_the_link_cannot_admit_a_link_holder_with_a_departed_members_leave() -> None:
    # The same attack with what the relay has: every frame it saw, carol's `leave` (and the
    # `left` it would pass on) included. Her seeds are sealed under her epoch's link (11.4):
    # no value it saw, nor any 32 bytes inside one, is a signing seed or signs as carol, and
    # an admission signed with such bytes is refused by the committer (alice), so mallory
    # stays out. Fails on the clear `signing_keys` of the old `leave`.
    room, seed, leave_text = _knock_room_whose_carol_left("admission without the seed")
    alice, bob, carol = (room.members[n] for n in ("alice", "bob", "carol"))
    leave = decode_client_frame(leave_text)
    seen, _ = held_values(leave_text, room.relay.seen)
    assert not any(seed in value for value in seen)  # not a field, not inside one
    carol_key = next(e.sign_key for e in alice.member._epoch.roster if e.index == carol.index)
    assert carol_key == MemberKeys(seed, bytes(32)).sign_key
    windows = {
        value[at : at + 32] for value in held_values(leave_text)[0] for at in range(len(value) - 31)
    }
    candidates = windows | {value for value in seen if len(value) == 32}
    assert all(MemberKeys(c, bytes(32)).sign_key != carol_key for c in candidates)
    # The clear form is gone from the wire: a decoder refuses it.
    clear = '{"t":"leave","signing_keys":["' + b64(seed) + '"]}'
    with pytest.raises(RoomProtocolError) as error:
        decode_client_frame(clear)
    assert error.value.code == "malformed"
    # The relay's best guess: the 32 bytes where the seed sits inside the sealed value.
    assert isinstance(leave, Leave)
    assert leave.sealed_seeds is not None
    guess = b64url_decode(leave.sealed_seeds)[12:44]
    epoch, code = alice.member.epoch, alice.member.safety_code
    _forge_admission(room, carol.index, guess)
    mallory = room.members["mallory"]
    assert mallory.member.state is MemberState.CLOSED
    assert [e.code for e in mallory.events if isinstance(e, RelayError)] == ["not_admitted"]
    assert refused(alice) == []  # a bad admission is answered with `refuse`, not an error
    assert encode_frame(Refuse(index=mallory.index)) in room.relay.seen
    for member in (alice.member, bob.member):
        assert member.epoch == epoch
        assert member.safety_code == code
        assert mallory.index not in {index for index, _ in member.members}
