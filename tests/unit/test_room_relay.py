"""The sans-I/O relay (protocol/room_relay.py) against a member who sends what no honest member
sends, and strangers and knockers the room must not keep or forget (rooms.md sections 7.3, 11.3,
12, 13): honest `RoomMember`s over the real `RelayRoom` with a clock the test moves."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.rooms_support import RELAY_START, RelayHarness, SeededRandom

from atopos.protocol.room_events import JoinRequested, MemberLeft, MessageReceived
from atopos.protocol.room_member import MemberState, RoomMember
from atopos.protocol.room_relay import CLOSE_MALFORMED, RelayRoom, SendText, WipeRoom

Document = dict[str, Any]


def _three(label: str) -> tuple[RelayHarness, int, int, int]:
    harness = RelayHarness(label)
    alice = harness.add_member("alice", creator=True)
    bob = harness.add_member("bob")
    mallory = harness.add_member("mallory")
    assert len(harness.active()) == 3
    return harness, alice, bob, mallory


def _update_of(harness: RelayHarness, connection: int) -> Document:
    """The honest `update` commit this member queues (not yet sent)."""
    harness.members[connection].update(harness.now)
    (text,) = harness.members[connection].outgoing()
    document: Document = json.loads(text)
    assert document["t"] == "commit"
    assert document["reason"] == "update"
    return document


def _send(harness: RelayHarness, connection: int, document: Document) -> list[str]:
    """Hand the relay one frame; the texts it sends to anyone else."""
    actions = harness.relay.receive(connection, json.dumps(document), harness.now)
    harness.apply(actions)
    return [
        a.text
        for a in actions
        if isinstance(a, SendText) and any(c != connection for c in a.connections)
    ]


def _assert_refused_as_bad_commit(harness: RelayHarness, connection: int, epoch: int) -> None:
    assert harness.close_codes.get(connection) == CLOSE_MALFORMED
    assert connection not in harness.relay.connections
    assert harness.relay.epoch == epoch


def _junk_joins(document: Document) -> None:
    z32 = "A" * 43
    document["joins"] = [
        {
            "index": 10_000 + n,
            "sign_key": z32,
            "seal_key": z32,
            "nonce": z32,
            "auth": z32,
            "profile": "A" * 208,
        }
        for n in range(3)
    ]


def _no_sealed(document: Document) -> None:
    document["sealed"] = []


def _sealed_twice(document: Document) -> None:
    document["sealed"] = document["sealed"] + document["sealed"][:1]


def _sealed_out_of_order(document: Document) -> None:
    document["sealed"] = list(reversed(document["sealed"]))


def _sealed_to_the_committer(document: Document) -> None:
    extra = dict(document["sealed"][0], index=document["committer"])
    document["sealed"] = sorted([*document["sealed"], extra], key=lambda s: s["index"])


@pytest.mark.parametrize(
    "tamper",
    [_junk_joins, _no_sealed, _sealed_twice, _sealed_out_of_order, _sealed_to_the_committer],
)
def test_an_update_with_joins_or_a_wrong_sealed_list_is_refused_and_never_fanned_out(
    tamper: Callable[[Document], None],
) -> None:
    harness, alice, bob, mallory = _three("update-shape")
    epoch = harness.relay.epoch
    update = _update_of(harness, mallory)
    tamper(update)
    fanned = _send(harness, mallory, update)
    assert not any('"t":"commit"' in text for text in fanned)
    _assert_refused_as_bad_commit(harness, mallory, epoch)
    # The others see mallory leave and go on in a new epoch without her.
    harness.pump()
    assert any(isinstance(e, MemberLeft) for e in harness.events[alice])
    assert {m.epoch for m in harness.active()} == {epoch + 1}
    assert sorted(harness.relay.roster) == [0, 1]
    harness.members[bob].send_text("still here")
    harness.pump()
    assert "still here" in [e.text for e in harness.events[alice] if isinstance(e, MessageReceived)]


def _bob_dropped_mallory_twice(document: Document, bob: int) -> None:
    roster = document["roster"]
    mine = next(r for r in roster if r["index"] == document["committer"])
    document["roster"] = [r for r in roster if r["index"] != bob] + [mine]
    document["sealed"] = [s for s in document["sealed"] if s["index"] != bob]


def _bob_dropped(document: Document, bob: int) -> None:
    document["roster"] = [r for r in document["roster"] if r["index"] != bob]
    document["sealed"] = [s for s in document["sealed"] if s["index"] != bob]


def _bob_rekeyed(document: Document, bob: int) -> None:
    mine = next(r for r in document["roster"] if r["index"] == document["committer"])
    for entry in document["roster"]:
        if entry["index"] == bob:
            entry["seal_key"] = mine["seal_key"]


def _stranger_added(document: Document, bob: int) -> None:
    mine = next(r for r in document["roster"] if r["index"] == document["committer"])
    document["roster"].append(dict(mine, index=77))
    document["sealed"].append(dict(document["sealed"][0], index=77))


@pytest.mark.parametrize(
    "tamper", [_bob_dropped_mallory_twice, _bob_dropped, _bob_rekeyed, _stranger_added]
)
def test_an_update_that_changes_anything_but_its_own_keys_is_refused(
    tamper: Callable[[Document, int], None],
) -> None:
    harness, alice, bob, mallory = _three("update-roster")
    epoch = harness.relay.epoch
    roster_before = dict(harness.relay.roster)
    update = _update_of(harness, mallory)
    tamper(update, harness.members[bob].index or 0)
    fanned = _send(harness, mallory, update)
    assert not any('"t":"commit"' in text for text in fanned)
    _assert_refused_as_bad_commit(harness, mallory, epoch)
    # Bob was never dropped from the relay's roster: his messages still go out.
    assert {i: roster_before[i] for i in (0, 1)} == {i: harness.relay.roster[i] for i in (0, 1)}
    harness.pump()
    harness.members[bob].send_text("not muted")
    harness.pump()
    assert "not muted" in [e.text for e in harness.events[alice] if isinstance(e, MessageReceived)]


def test_honest_updates_still_pass() -> None:
    harness, alice, bob, mallory = _three("update-honest")
    epoch = harness.relay.epoch
    for connection in (alice, bob, mallory):
        harness.members[connection].update(harness.now)
        harness.pump()
    assert {m.epoch for m in harness.active()} == {epoch + 3}
    assert not harness.closed


def _change_commit(label: str) -> tuple[RelayHarness, int, Document]:
    """Alice and bob in a room; carol arrives and alice, the named committer, queues the
    commit of the announced change (not yet sent)."""
    harness = RelayHarness(label)
    alice = harness.add_member("alice", creator=True)
    harness.add_member("bob")
    carol = harness.next_id
    harness.next_id += 1
    member = harness.members[carol] = RoomMember(
        harness.new.member_link, "carol", SeededRandom("c")
    )
    harness.apply(harness.relay.open(carol, SeededRandom("carol's challenge")(32), harness.now))
    while member.state is not MemberState.WAITING:  # only carol's frames go in
        for frame in member.outgoing():
            harness.apply(harness.relay.receive(carol, frame, harness.now))
    (text,) = harness.members[alice].outgoing()
    document: Document = json.loads(text)
    assert document["reason"] == "change"
    assert harness.relay.pending is not None
    return harness, alice, document


def test_a_change_commit_with_other_joins_than_announced_is_not_taken() -> None:
    harness, alice, commit = _change_commit("change-joins")
    epoch = harness.relay.epoch
    honest = json.loads(json.dumps(commit))
    commit["joins"] = commit["joins"] + commit["joins"]
    assert not _send(harness, alice, commit)  # dropped: the announced change still waits
    assert harness.relay.epoch == epoch
    assert harness.relay.pending is not None
    assert _send(harness, alice, honest)
    harness.pump()
    assert len(harness.active()) == 3
    assert harness.relay.epoch == epoch + 1


def test_a_change_commit_with_a_wrong_sealed_list_is_refused() -> None:
    harness, alice, commit = _change_commit("change-sealed")
    epoch = harness.relay.epoch
    commit["sealed"] = commit["sealed"][:1]
    assert not any('"t":"commit"' in text for text in _send(harness, alice, commit))
    _assert_refused_as_bad_commit(harness, alice, epoch)
    harness.pump()  # bob commits the change instead
    assert len(harness.active()) == 2
    assert harness.relay.epoch == epoch + 1


# -- the empty grace --------------------------------------------------------------------------


def _wiped(relay: RelayRoom, now: float) -> bool:
    return any(isinstance(a, WipeRoom) for a in relay.tick(now))


def test_a_stranger_who_only_knows_the_room_id_does_not_extend_the_empty_grace() -> None:
    harness = RelayHarness("grace-stranger")
    relay = harness.relay
    grace = relay.limits.empty_grace_seconds
    relay.open(1, SeededRandom("stranger")(32), RELAY_START + grace - 20)
    assert not _wiped(relay, RELAY_START + grace - 10)  # its handshake times out: closed
    assert 1 not in relay.connections
    relay.closed(1, RELAY_START + grace - 10)
    assert _wiped(relay, RELAY_START + grace)


def test_strangers_connected_all_the_time_do_not_keep_an_empty_room() -> None:
    harness = RelayHarness("grace-strangers")
    relay = harness.relay
    alice = harness.add_member("alice", creator=True)
    harness.members[alice].leave()
    harness.pump()
    left_at = harness.now
    grace = relay.limits.empty_grace_seconds
    connection, now, wiped_at = 100, left_at, None
    while now < left_at + 2 * grace and wiped_at is None:
        connection += 1  # a new connection every 5 s, each one silent for its 10 s
        relay.open(connection, SeededRandom(f"s/{connection}")(32), now)
        now += 5
        if _wiped(relay, now):
            wiped_at = now
    assert wiped_at == left_at + grace


def test_a_member_who_proves_the_link_clears_the_empty_grace() -> None:
    harness = RelayHarness("grace-member")
    grace = harness.relay.limits.empty_grace_seconds
    harness.now = RELAY_START + grace - 1
    harness.add_member("alice", creator=True)
    assert not _wiped(harness.relay, RELAY_START + grace + 60)


# -- knocks -----------------------------------------------------------------------------------


def _knocks_seen(harness: RelayHarness, connection: int) -> list[int]:
    return [e.index for e in harness.events.get(connection, []) if isinstance(e, JoinRequested)]


def test_a_knock_left_when_every_member_went_is_announced_to_the_next_member() -> None:
    harness = RelayHarness("knock-empty", knock=True)
    alice = harness.add_member("alice", creator=True)
    bob = harness.add_member("bob")
    assert _knocks_seen(harness, alice) == [1]
    harness.members[alice].leave()
    harness.pump()
    assert harness.relay.roster == {}
    carol = harness.add_member("carol")  # founds the empty room alone
    assert harness.members[carol].state is MemberState.ACTIVE
    assert _knocks_seen(harness, carol) == [1]
    harness.members[carol].admit(1)
    harness.pump()
    assert harness.members[bob].state is MemberState.ACTIVE
    assert harness.members[bob].epoch == harness.members[carol].epoch


def test_a_knock_is_announced_to_a_member_admitted_after_it_and_shown_once_to_the_others() -> None:
    harness = RelayHarness("knock-later", knock=True)
    alice = harness.add_member("alice", creator=True)
    bob = harness.add_member("bob")  # knocks first
    carol = harness.add_member("carol")  # knocks second
    assert _knocks_seen(harness, alice) == [1, 2]
    harness.members[alice].admit(2)
    harness.pump()
    assert harness.members[carol].state is MemberState.ACTIVE
    assert _knocks_seen(harness, carol) == [1]  # bob's knock, from before she was in
    assert _knocks_seen(harness, alice) == [1, 2]  # alice is not asked twice
    harness.members[alice].leave()
    harness.pump()
    harness.members[carol].admit(1)
    harness.pump()
    assert harness.members[bob].state is MemberState.ACTIVE


# -- leaving ------------------------------------------------------------------------------------


def _lefts(actions: list[Any]) -> list[Document]:
    return [
        json.loads(action.text)
        for action in actions
        if isinstance(action, SendText) and action.text.startswith('{"t":"left"')
    ]


def test_the_relay_passes_sealed_seeds_on_unread_and_publishes_none_for_a_drop() -> None:
    # rooms.md 11.4 and 12: a member's `leave` carries its epoch and sealed seeds, which the
    # relay copies into `left`; a knocker with no epoch publishes nothing, nor does a drop.
    harness = RelayHarness("sealed-seeds", knock=True)
    alice = harness.add_member("alice", creator=True)
    for name in ("bob", "carol"):
        joiner = harness.add_member(name)
        harness.members[alice].admit(harness.members[joiner].index)  # type: ignore[arg-type]
        harness.pump()
    bob, carol = alice + 1, alice + 2
    dave = harness.add_member("dave")  # knocks, never admitted
    assert harness.members[dave].state is MemberState.WAITING

    harness.members[dave].leave()
    (nothing,) = harness.members[dave].outgoing()
    assert nothing == '{"t":"leave"}'
    actions = harness.relay.receive(dave, nothing, harness.now)
    assert [(d["index"], "epoch" in d, "sealed_seeds" in d) for d in _lefts(actions)] == [
        (3, False, False)
    ]
    harness.apply(actions)

    harness.members[bob].leave()
    (leave_text,) = harness.members[bob].outgoing()
    leave = json.loads(leave_text)
    assert set(leave) == {"t", "epoch", "sealed_seeds"}
    assert leave["epoch"] == harness.members[alice].epoch
    actions = harness.relay.receive(bob, leave_text, harness.now)
    (left,) = _lefts(actions)
    assert (left["index"], left["epoch"], left["sealed_seeds"]) == (
        1,
        leave["epoch"],
        leave["sealed_seeds"],
    )
    harness.apply(actions)

    actions = harness.relay.closed(carol, harness.now)
    (dropped,) = _lefts(actions)
    assert set(dropped) == {"t", "seq", "index"}
    harness.apply(actions)
    published = [
        (e.index, e.published_keys) for e in harness.events[alice] if isinstance(e, MemberLeft)
    ]
    assert published == [(3, 0), (1, 1), (2, 0)]
