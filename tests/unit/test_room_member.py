"""The member state machine against the relay double: conversations, and every frame a
member must refuse (replayed, reordered beyond the window, truncated, tampered, cross-room,
cross-epoch, forged by a non-member) and a hostile relay (inserting a member, dropping,
repeating or reordering frames)."""

from __future__ import annotations

import copy

import pytest
from tests.rooms_support import SeededRandom, open_room, refused

from atopos.crypto.room_keys import MemberKeys
from atopos.crypto.room_message import encrypt_message, message_aad
from atopos.crypto.room_ratchet import MAX_SKIP, MessageKey
from atopos.crypto.room_transcript import message_signing_input
from atopos.protocol.room_errors import RoomProtocolError
from atopos.protocol.room_events import (
    EpochStarted,
    JoinRequested,
    MessageDelivered,
    MessageReceived,
    MessagesMissing,
    SequenceGap,
)
from atopos.protocol.room_member import TRANSITIONS, MemberState, RoomMember
from atopos.protocol.room_wire import (
    Change,
    JoinItem,
    Knock,
    RelayedCommit,
    RelayedMessage,
    RosterItem,
    b64,
    decode_relay_frame,
    encode_frame,
)


def _last_msg(room) -> RelayedMessage:  # type: ignore[no-untyped-def]
    frame = decode_relay_frame([t for t in room.relay.fanned if '"t":"msg"' in t][-1])
    assert isinstance(frame, RelayedMessage)
    return frame


def _deliver(room, name: str, frame) -> list:  # type: ignore[no-untyped-def]
    """Send `frame` to `name` as the relay's next room frame (a fresh seq, which the relay
    double then skips for everyone else)."""
    member = room.members[name].member
    fields = {f: getattr(frame, f) for f in frame.__struct_fields__}
    room.relay.seq += 1
    fields["seq"] = room.relay.seq
    return member.receive(encode_frame(type(frame)(**fields)), 0)


def test_three_members_talk_and_agree() -> None:
    room = open_room("alice", "bob", "carol")
    for name in ("alice", "bob", "carol"):
        member = room.members[name].member
        assert member.state is MemberState.ACTIVE
        assert member.members == ((0, "alice"), (1, "bob"), (2, "carol"))
    assert len({c.member.safety_code for c in room.members.values()}) == 1
    for number in range(3):
        room.say("alice", f"a{number}")
        room.say("bob", f"b{number}")
    room.say("carol", "c")
    assert room.texts("carol") == [
        (0, "a0"),
        (1, "b0"),
        (0, "a1"),
        (1, "b1"),
        (0, "a2"),
        (1, "b2"),
    ]
    assert [t for t in room.texts("alice") if t[0] == 1] == [(1, "b0"), (1, "b1"), (1, "b2")]
    assert room.texts("bob")[-1] == (2, "c")
    assert all(refused(c) == [] for c in room.members.values())
    for connection in room.members.values():
        assert not [e for e in connection.events if isinstance(e, SequenceGap)]
    delivered = [e for e in room.members["alice"].events if isinstance(e, MessageDelivered)]
    assert [e.counter for e in delivered] == [0, 1, 2]
    names = {e.name for e in room.members["bob"].events if isinstance(e, MessageReceived)}
    assert names == {"alice", "carol"}


def test_late_joiner_reads_no_history_and_leaver_is_announced() -> None:
    room = open_room("alice", "bob")
    room.say("alice", "history")
    room.join("carol")
    room.say("alice", "now")
    assert room.texts("carol") == [(0, "now")]
    room.members["bob"].member.leave()
    room.relay.pump()
    started = [e for e in room.members["alice"].events if isinstance(e, EpochStarted)]
    assert started[-1].left == (1,)
    assert room.members["carol"].member.members == ((0, "alice"), (2, "carol"))


def test_update_after_own_messages_and_time() -> None:
    room = open_room("alice", "bob")
    alice = room.members["alice"].member
    assert not alice.needs_update(10_000)  # has not spoken: no timer re-key
    room.say("alice", "x")
    assert not alice.needs_update(10)
    assert alice.needs_update(10_000)


def test_a_replayed_message_is_refused() -> None:
    room = open_room("alice", "bob")
    room.say("alice", "once")
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(room, "bob", _last_msg(room))
    assert caught.value.code == "stale"
    assert room.texts("bob") == [(0, "once")]


def test_reordering_within_the_window_is_harmless_beyond_it_refused() -> None:
    room = open_room("alice", "bob")
    alice = room.members["alice"].member
    held = []
    for number in range(3):
        alice.send_text(f"m{number}")
        held += alice.outgoing()
    for text in reversed(held):  # the relay sends them in reverse order
        room.relay.handle(room.members["alice"], text)
    assert sorted(room.texts("bob")) == [(0, "m0"), (0, "m1"), (0, "m2")]
    # the late one, once read, is gone: a replay of it is refused
    with pytest.raises(RoomProtocolError) as caught:
        room.relay.handle(room.members["alice"], held[0]) or bob_raise(room)
    assert caught.value.code == "stale"
    # a counter more than MAX_SKIP ahead is refused
    far = _last_msg(room)
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "bob",
            RelayedMessage(
                seq=0,
                epoch=far.epoch,
                sender=0,
                counter=far.counter + MAX_SKIP + 5,
                ct=far.ct,
                sig=far.sig,
            ),
        )
    assert caught.value.code in ("bad_signature", "stale")


def bob_raise(room) -> None:  # type: ignore[no-untyped-def]
    """Raise bob's last refusal (the relay double collects them instead of raising)."""
    errors = room.members["bob"].errors
    if errors:
        raise errors.pop()


def test_a_counter_forgotten_by_the_window_is_refused() -> None:
    room = open_room("alice", "bob")
    alice = room.members["alice"].member
    alice.send_text("late")
    late = alice.outgoing()
    for number in range(MAX_SKIP + 2):  # fills the skipped-key store past its bound
        alice.send_text(str(number))
        alice.outgoing()
    alice.send_text("jump")
    room.relay.handle(room.members["alice"], alice.outgoing()[0])
    assert room.texts("bob") == []  # the jump is more than MAX_SKIP: refused
    assert refused(room.members["bob"]) == ["stale"]
    room.relay.handle(room.members["alice"], late[0])
    assert room.texts("bob") == [(0, "late")]


def test_truncated_and_tampered_frames_are_refused() -> None:
    room = open_room("alice", "bob")
    room.say("alice", "original")
    frame = _last_msg(room)
    bob = room.members["bob"].member
    text = encode_frame(
        RelayedMessage(
            seq=bob._last_seq + 1,
            epoch=frame.epoch,
            sender=0,
            counter=1,
            ct=frame.ct,
            sig=frame.sig,
        )
    )
    for broken in (text[: len(text) // 2], text[:-1], text + "x"):
        with pytest.raises(RoomProtocolError) as caught:
            bob.receive(broken, 0)
        assert caught.value.code == "malformed"
    flipped = frame.ct[:10] + ("A" if frame.ct[10] != "A" else "B") + frame.ct[11:]
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "bob",
            RelayedMessage(
                seq=0, epoch=frame.epoch, sender=0, counter=0, ct=flipped, sig=frame.sig
            ),
        )
    assert caught.value.code == "bad_signature"
    # a ciphertext cut by whole base64 groups: below the smallest bucket, or a bad signature
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "bob",
            RelayedMessage(
                seq=0, epoch=frame.epoch, sender=0, counter=0, ct=frame.ct[:-4], sig=frame.sig
            ),
        )
    assert caught.value.code == "malformed"


def test_a_sender_signing_garbage_under_its_own_key_is_undecryptable() -> None:
    room = open_room("alice", "bob")
    alice = room.members["alice"].member
    epoch = alice.epoch
    wrong_key = MessageKey(0, bytes(32), bytes(12))
    aad = message_aad(alice.room_id, epoch, 0, 0)
    ciphertext = encrypt_message(wrong_key, aad, b'{"type":"text","text":"x"}')
    signature = alice._keys.sign(message_signing_input(alice.room_id, epoch, 0, 0, ciphertext))
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "bob",
            RelayedMessage(
                seq=0, epoch=epoch, sender=0, counter=0, ct=b64(ciphertext), sig=b64(signature)
            ),
        )
    assert caught.value.code == "undecryptable"


def test_cross_room_and_cross_epoch_frames_are_refused() -> None:
    one = open_room("alice", "bob", label="one")
    two = open_room("alice", "bob", label="two")
    one.say("alice", "for room one")
    frame = _last_msg(one)
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(two, "bob", frame)
    assert caught.value.code in ("bad_signature", "stale")
    # the same frame relabelled with another epoch
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            one,
            "bob",
            RelayedMessage(
                seq=0, epoch=frame.epoch + 1, sender=0, counter=0, ct=frame.ct, sig=frame.sig
            ),
        )
    assert caught.value.code == "stale"
    # an old-epoch frame two commits later
    one.members["alice"].member.update(0)
    one.relay.pump()
    one.members["bob"].member.update(0)
    one.relay.pump()
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            one,
            "bob",
            RelayedMessage(
                seq=0, epoch=frame.epoch, sender=0, counter=1, ct=frame.ct, sig=frame.sig
            ),
        )
    assert caught.value.code == "stale"


def test_a_frame_forged_by_a_non_member_is_refused() -> None:
    room = open_room("alice", "bob")
    bob = room.members["bob"].member
    outsider = MemberKeys.generate(SeededRandom("outsider"))
    epoch = bob.epoch
    ciphertext = encrypt_message(
        MessageKey(0, bytes(32), bytes(12)), message_aad(bob.room_id, epoch, 0, 0), b"{}"
    )
    signature = outsider.sign(message_signing_input(bob.room_id, epoch, 0, 0, ciphertext))
    for sender in (0, 7):
        with pytest.raises(RoomProtocolError) as caught:
            _deliver(
                room,
                "bob",
                RelayedMessage(
                    seq=0,
                    epoch=epoch,
                    sender=sender,
                    counter=0,
                    ct=b64(ciphertext),
                    sig=b64(signature),
                ),
            )
        assert caught.value.code == "bad_signature"


# -- a hostile relay -------------------------------------------------------------------------


def _fake_join(index: int, label: str) -> JoinItem:
    keys = MemberKeys.generate(SeededRandom(label))
    random = SeededRandom(label + "/b")
    return JoinItem(
        index=index,
        sign_key=b64(keys.sign_key),
        seal_key=b64(keys.seal_key),
        nonce=b64(random(32)),
        auth=b64(random(32)),
        profile=b64(random(156)),
    )


def test_a_relay_inserted_member_is_refused_by_the_committer() -> None:
    room = open_room("alice", "bob")
    alice = room.members["alice"].member
    roster = decode_relay_frame([t for t in room.relay.fanned if '"t":"commit"' in t][-1])
    assert isinstance(roster, RelayedCommit)
    join = _fake_join(9, "intruder")
    intruder = RosterItem(
        index=9,
        identity=join.sign_key,
        sign_key=join.sign_key,
        seal_key=join.seal_key,
        profile=join.profile,
    )
    change = Change(
        seq=0,
        epoch=alice.epoch + 1,
        committer=0,
        reason="change",
        roster=[*roster.roster, intruder],
        joins=[join],
        leaves=[],
    )
    _deliver(room, "alice", change)
    sent = [decode_relay_frame_client(t) for t in alice.outgoing()]
    assert sent == [("refuse", 9)]  # no commit: the joiner has no member-auth
    assert alice.epoch == roster.epoch


def decode_relay_frame_client(text: str) -> tuple[str, int]:
    from atopos.protocol.room_wire import Refuse, decode_client_frame

    frame = decode_client_frame(text)
    assert isinstance(frame, Refuse)
    return ("refuse", frame.index)


def test_a_relay_forged_commit_or_knock_is_refused() -> None:
    room = open_room("alice", "bob", knock=True)
    alice_conn, bob_conn = room.members["alice"], room.members["bob"]
    alice_conn.member.admit(1)
    room.relay.pump()
    last = decode_relay_frame([t for t in room.relay.fanned if '"t":"commit"' in t][-1])
    assert isinstance(last, RelayedCommit)
    # the relay re-signs nothing: it can only replay or alter; it has no member-auth key
    forged = RelayedCommit(
        **{
            **{f: getattr(last, f) for f in last.__struct_fields__},
            "epoch": last.epoch + 1,
            "reason": "update",
        }
    )
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(room, "bob", forged)
    assert caught.value.code == "bad_auth"
    join = _fake_join(5, "knocker")
    _deliver(
        room,
        "alice",
        Knock(
            seq=0,
            index=5,
            sign_key=join.sign_key,
            seal_key=join.seal_key,
            nonce=join.nonce,
            auth=join.auth,
            profile=join.profile,
        ),
    )
    assert not [e for e in alice_conn.events if isinstance(e, JoinRequested) and e.index == 5]
    assert [decode_relay_frame_client(t) for t in alice_conn.member.outgoing()] == [("refuse", 5)]
    assert bob_conn.member.state is MemberState.ACTIVE


def test_a_relay_that_drops_repeats_or_reorders_is_detected() -> None:
    room = open_room("alice", "bob")
    bob = room.members["bob"]
    original = room.relay.deliver
    dropped: list[str] = []

    def drop_messages(connection, text):  # type: ignore[no-untyped-def]
        if connection is bob and '"t":"msg"' in text and not dropped:
            dropped.append(text)
            return
        original(connection, text)

    room.relay.deliver = drop_messages  # type: ignore[method-assign]
    room.say("alice", "lost")
    room.say("alice", "arrives")
    room.relay.deliver = original  # type: ignore[method-assign]
    assert [e for e in bob.events if isinstance(e, SequenceGap)]
    room.members["alice"].member.update(0)
    room.relay.pump()
    missing = [e for e in bob.events if isinstance(e, MessagesMissing)]
    assert [(m.sender, m.counters) for m in missing] == [(0, (0,))]
    # a repeated or earlier sequence number is refused
    with pytest.raises(RoomProtocolError) as caught:
        bob.member.receive(room.relay.fanned[-1], 0)
    assert caught.value.code == "sequence_gap"
    with pytest.raises(RoomProtocolError) as caught:
        bob.member.receive(dropped[0], 0)
    assert caught.value.code == "sequence_gap"


def test_a_refused_frame_leaves_the_state_unchanged() -> None:
    room = open_room("alice", "bob")
    bob = room.members["bob"].member
    room.say("alice", "one")
    before = copy.deepcopy(bob)
    frame = _last_msg(room)
    with pytest.raises(RoomProtocolError):
        _deliver(
            room,
            "bob",
            RelayedMessage(
                seq=0, epoch=frame.epoch, sender=0, counter=1, ct=frame.ct, sig=frame.sig
            ),
        )
    assert bob.epoch == before.epoch
    assert bob.state is before.state
    room.say("alice", "two")
    assert room.texts("bob")[-1] == (0, "two")


# -- the table ------------------------------------------------------------------------------


def test_transition_table_is_closed_and_ends_everywhere() -> None:
    for (state, _event, _guard), target in TRANSITIONS.items():
        assert isinstance(state, MemberState)
        assert isinstance(target, MemberState)
        assert state is not MemberState.CLOSED
    for state in MemberState:
        if state is not MemberState.CLOSED:
            assert TRANSITIONS[(state, "ended", None)] is MemberState.CLOSED


def test_commands_out_of_state_are_unexpected() -> None:
    room = open_room("alice")
    member = RoomMember(room.new.member_link, "x", SeededRandom("x"))
    for command in (lambda: member.send_text("hi"), member.leave, lambda: member.update(0)):
        with pytest.raises(RoomProtocolError) as caught:
            command()
        assert caught.value.code == "unexpected"
    with pytest.raises(RoomProtocolError) as caught:
        member.receive('{"t":"welcome","seq":1,"index":0,"epoch":0}', 0)
    assert caught.value.code == "unexpected"


def test_a_relay_that_swaps_a_members_key_in_a_change_gets_no_commit() -> None:
    room = open_room("alice", "bob")
    alice = room.members["alice"].member
    last = decode_relay_frame([t for t in room.relay.fanned if '"t":"commit"' in t][-1])
    assert isinstance(last, RelayedCommit)
    relay_keys = MemberKeys.generate(SeededRandom("relay keys"))
    bob_entry = last.roster[1]
    swapped = RosterItem(
        index=bob_entry.index,
        identity=bob_entry.identity,
        sign_key=bob_entry.sign_key,
        seal_key=b64(relay_keys.seal_key),
        profile=bob_entry.profile,
    )
    # an honest-looking change (bob "re-announced") with bob's X25519 key replaced
    carol = room.join("carol")
    del carol
    last = decode_relay_frame([t for t in room.relay.fanned if '"t":"commit"' in t][-1])
    assert isinstance(last, RelayedCommit)
    roster = [swapped if item.index == 1 else item for item in last.roster]
    change = Change(
        seq=0,
        epoch=alice.epoch + 1,
        committer=0,
        reason="change",
        roster=roster,
        joins=[],
        leaves=[2],
    )
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "alice",
            Change(
                **{
                    **{f: getattr(change, f) for f in change.__struct_fields__},
                    "roster": [item for item in roster if item.index != 2],
                }
            ),
        )
    assert caught.value.code == "bad_commit"
    assert alice.outgoing() == []  # nothing sealed to the relay's key


def test_an_update_racing_a_change_is_dropped_and_can_be_retried() -> None:
    room = open_room("alice", "bob")
    bob = room.members["bob"].member
    bob.update(0)  # queued, not yet handled by the relay
    pending_update = bob.outgoing()
    room.join("carol")  # the relay announces and commits the join first
    room.relay.handle(room.members["bob"], pending_update[0])  # now stale: dropped
    room.relay.pump()
    assert bob.state is MemberState.ACTIVE
    assert bob._pending is None
    bob.update(0)
    room.relay.pump()
    assert {c.member.epoch for c in room.members.values()} == {bob.epoch}
    room.say("bob", "re-keyed")
    assert room.texts("carol")[-1] == (1, "re-keyed")


# -- a malicious member as committer (with a relay that goes along) ---------------------------


def _craft(room, author: str, *, committer: int, reason, roster, joins):  # type: ignore[no-untyped-def]
    """A commit `author` makes with its own keys and secrets, whatever it claims."""
    from atopos.crypto.room_transcript import CommitReason
    from atopos.protocol.room_commit import build_commit
    from atopos.protocol.room_wire import RelayedCommit

    member = room.members[author].member
    built = build_commit(
        secrets=member._secrets,
        committer=committer,
        epoch=member.epoch + 1,
        reason=CommitReason[reason.upper()],
        roster=roster,
        joins=joins,
        previous_link=member._epoch_link,
        transcript=member._transcript,
        membership=member._membership,
        signer=member._keys,
        random_bytes=SeededRandom("craft"),
    )
    frame = built.frame
    return RelayedCommit(seq=0, **{f: getattr(frame, f) for f in frame.__struct_fields__})


def test_a_commit_signed_by_someone_else_than_its_committer_is_refused() -> None:
    from atopos.crypto.room_roster import RosterEntry

    room = open_room("alice", "bob", "carol")
    bob = room.members["bob"].member
    fake = MemberKeys.generate(SeededRandom("fake alice"))
    roster = [
        RosterEntry(e.index, e.identity, fake.sign_key, fake.seal_key, e.profile)
        if e.index == 0
        else e
        for e in bob._epoch.roster
    ]
    # bob claims alice re-keyed (to keys bob holds): carol must refuse
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "carol",
            _craft(room, "bob", committer=0, reason="update", roster=roster, joins=[]),
        )
    assert caught.value.code == "bad_signature"


def _announce(room, name: str, commit: RelayedCommit, leaves: list[int]) -> None:  # type: ignore[no-untyped-def]
    _deliver(
        room,
        name,
        Change(
            seq=0,
            epoch=commit.epoch,
            committer=commit.committer,
            reason="change",
            roster=commit.roster,
            joins=commit.joins,
            leaves=leaves,
        ),
    )


def test_a_committer_adding_an_unauthentic_or_unadmitted_joiner_is_refused() -> None:
    from atopos.crypto.room_roster import RosterEntry
    from atopos.protocol.room_commit import join_from_wire

    for knock, label in ((False, "bad_auth"), (True, "not_admitted")):
        room = open_room("alice", "bob", knock=knock, label=f"craft {knock}")
        if knock:
            room.members["alice"].member.admit(1)
            room.relay.pump()
        alice = room.members["alice"].member
        join = _fake_join(9, "intruder")
        if knock:  # a joiner with the link (valid auth) that nobody admitted
            from atopos.crypto.room_keys import member_auth_message, member_auth_tag

            evidence = join_from_wire(join)
            message = member_auth_message(
                alice.room_id,
                evidence.nonce,
                evidence.sign_key,
                evidence.seal_key,
                evidence.profile,
            )
            join = JoinItem(
                index=9,
                sign_key=join.sign_key,
                seal_key=join.seal_key,
                nonce=join.nonce,
                auth=b64(member_auth_tag(alice._secrets, message)),
                profile=join.profile,
            )
        evidence = join_from_wire(join)
        roster = [
            *alice._epoch.roster,
            RosterEntry(
                9, evidence.sign_key, evidence.sign_key, evidence.seal_key, evidence.profile
            ),
        ]
        commit = _craft(
            room, "alice", committer=0, reason="change", roster=roster, joins=[evidence]
        )
        _announce(room, "bob", commit, [])
        with pytest.raises(RoomProtocolError) as caught:
            _deliver(room, "bob", commit)
        assert caught.value.code == label
        # and an honest committer refuses the same announcement
        alice.outgoing()
        _announce(room, "alice", commit, [])
        assert [decode_relay_frame_client(t) for t in alice.outgoing()] == [("refuse", 9)]


def test_a_member_removed_from_the_epoch_cannot_post_into_the_previous_one() -> None:
    room = open_room("alice", "bob", "carol")
    carol = room.members["carol"].member
    carol.send_text("sent just before leaving")
    (late,) = carol.outgoing()
    alice = room.members["alice"].member
    alice.send_text("alice, also just before")
    (alice_late,) = alice.outgoing()
    carol.leave()
    room.relay.pump()
    from atopos.protocol.room_wire import Message, decode_client_frame

    message = decode_client_frame(late)
    assert isinstance(message, Message)
    assert room.members["bob"].member.epoch == message.epoch + 1
    with pytest.raises(RoomProtocolError) as caught:
        _deliver(
            room,
            "bob",
            RelayedMessage(seq=0, **{f: getattr(message, f) for f in message.__struct_fields__}),
        )
    assert caught.value.code == "bad_signature"
    # while a member still present may: alice's late frame of the previous epoch is read
    alice_message = decode_client_frame(alice_late)
    assert isinstance(alice_message, Message)
    events = _deliver(
        room,
        "bob",
        RelayedMessage(
            seq=0, **{f: getattr(alice_message, f) for f in alice_message.__struct_fields__}
        ),
    )
    assert [(e.sender, e.text) for e in events if isinstance(e, MessageReceived)] == [
        (0, "alice, also just before")
    ]


def test_local_input_is_checked_before_anything_is_sent() -> None:
    room = open_room("alice", "bob")
    with pytest.raises(ValueError, match="display name"):
        RoomMember(room.new.member_link, "x" * 127, SeededRandom("long"))
    with pytest.raises(ValueError, match="display name"):
        RoomMember(room.new.member_link, "\udc00", SeededRandom("surrogate"))
    alice = room.members["alice"].member
    for text, code in (("\ud800", "malformed"), ("x" * 20000, "too_large")):
        with pytest.raises(RoomProtocolError) as caught:
            alice.send_text(text)
        assert caught.value.code == code
    assert alice.outgoing() == []
    room.say("alice", "é" * 5000)  # long but within the limit
    assert room.texts("bob") == [(0, "é" * 5000)]


@pytest.mark.parametrize("code", ["ended", "full", "rate_limited", "not_admitted", "stale"])
def test_a_relay_error_frame_carries_a_relay_code(code: str) -> None:
    assert decode_relay_frame(f'{{"t":"error","code":"{code}","message":"m"}}').code == code  # type: ignore[union-attr]


@pytest.mark.parametrize("code", ["bad_auth", "bad_signature", "undecryptable", "sequence_gap"])
def test_a_member_only_code_in_a_relay_error_frame_is_malformed(code: str) -> None:
    """rooms.md section 13: these name a member's own refusals; no relay sends them."""
    with pytest.raises(RoomProtocolError) as refused_frame:
        decode_relay_frame(f'{{"t":"error","code":"{code}","message":"m"}}')
    assert refused_frame.value.code == "malformed"


def test_a_leave_seals_every_seed_for_the_epoch_and_at_most_the_newest_64() -> None:
    # rooms.md 11.4: the seeds come out, oldest first, for a holder of the epoch link only;
    # a member that signed with more than 64 keys publishes the newest 64 (the frame's cap).
    from atopos.crypto.base64url import b64url_decode
    from atopos.crypto.errors import DecryptionFailed
    from atopos.crypto.room_published_seeds import open_published_seeds
    from atopos.protocol.room_wire import Leave, decode_client_frame

    room = open_room("alice", "bob")
    bob = room.members["bob"].member
    older = [bytes([number]) * 32 for number in range(70)]
    bob._published_seeds = list(older)  # as if bob had made 70 self-updates
    current = bob._keys.signing_seed()
    link, epoch, index = bob._epoch_link, bob.epoch, bob.index
    assert link is not None
    assert epoch is not None
    assert index is not None
    bob.leave()
    (text,) = bob.outgoing()
    leave = decode_client_frame(text)
    assert isinstance(leave, Leave)
    assert leave.epoch == epoch
    assert leave.published_seeds == 64
    assert leave.sealed_seeds is not None
    sealed = b64url_decode(leave.sealed_seeds)
    assert open_published_seeds(link, bob.room_id, epoch, index, sealed) == [*older[-63:], current]
    with pytest.raises(DecryptionFailed):
        open_published_seeds(link, bob.room_id, epoch, index + 1, sealed)
    assert bob._published_seeds == []  # dropped with every other key


def test_a_joiner_with_no_epoch_leaves_publishing_nothing() -> None:
    room = open_room("alice", "bob", knock=True)
    bob = room.members["bob"].member
    assert bob.state is MemberState.WAITING
    bob.leave()
    assert bob.outgoing() == ['{"t":"leave"}']
