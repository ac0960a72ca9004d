"""The sans-I/O relay fuzzed with hypothesis: random and mutated frames, in any order, from
several connections (strangers at every handshake step and a joined member), with opens,
closes and ticks in between. The relay never raises (a raise would be a 1011 on the wire),
closes only with section 13's codes, and the room is never stuck: afterwards a newcomer with
the link joins and talks with the honest members."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atopos.protocol.room_events import MessageReceived
from atopos.protocol.room_member import MemberState
from atopos.protocol.room_relay import RoomState
from tests.rooms_support import RELAY_START as _START
from tests.rooms_support import RelayHarness as Harness
from tests.rooms_support import SeededRandom


def _seed_corpus() -> list[str]:
    harness = Harness("corpus")
    a = harness.add_member("a", creator=True)
    harness.add_member("b")
    harness.members[a].send_text("hello")
    harness.pump()
    harness.members[a].update(_START)
    harness.pump()
    harness.members[a].end()
    harness.pump()
    return [*harness.corpus, '{"t":"admit","index":1,"sig":"' + "A" * 86 + '"}']


_CORPUS = _seed_corpus()


def _mutate(text: str, how: int, where: int, junk: str) -> str:
    if how == 0:
        return text[: where % (len(text) + 1)]
    if how == 1:
        i = where % max(1, len(text))
        return text[:i] + junk + text[i + 1 :]
    document = json.loads(text)
    keys = sorted(document)
    key = keys[where % len(keys)]
    if how == 2:
        document[key] = junk
    elif how == 3:
        document[key] = where
    elif how == 4:
        del document[key]
    else:
        document["extra"] = junk
    return json.dumps(document)


_frame = st.one_of(
    st.text(max_size=200),
    st.text(st.characters(codec=None, categories=["Cs", "Ll"]), max_size=5),
    st.builds(
        _mutate,
        st.sampled_from(_CORPUS),
        st.integers(0, 5),
        st.integers(0, 10_000),
        st.text(max_size=20),
    ),
    st.sampled_from(_CORPUS),
)
_op = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 3)),
    st.tuples(st.just("send"), st.integers(0, 4), _frame),
    st.tuples(st.just("close"), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.floats(0, 20)),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, max_size=40))
def test_no_crash_no_1011_no_stuck_room(ops: list[tuple[object, ...]]) -> None:
    harness = Harness("fuzz")
    alice = harness.add_member("alice", creator=True)
    harness.add_member("bob")
    mallory = harness.add_member("mallory")
    strangers = [1000 + n for n in range(4)]
    opened: set[int] = set()
    for op in ops:
        if op[0] == "open":
            connection = strangers[int(op[1])]  # type: ignore[call-overload]
            if connection not in opened:
                opened.add(connection)
                challenge = SeededRandom(f"s/{connection}")(32)
                harness.apply(harness.relay.open(connection, challenge, harness.now))
        elif op[0] == "send":
            target = int(op[1])  # type: ignore[call-overload]
            text = str(op[2])
            # 0-3: a stranger at whatever step it is; 4: mallory, a joined member, sends
            # anything but a commit (a member's forged update is the members' to refuse,
            # and it moves the relay's epoch: section 14 lists that as a member's power).
            connection = strangers[target] if target < 4 else mallory
            if target == 4 and '"commit"' in text:
                continue
            harness.apply(harness.relay.receive(connection, text, harness.now))
        elif op[0] == "close":
            connection = strangers[int(op[1])]  # type: ignore[call-overload]
            harness.apply(harness.relay.closed(connection, harness.now))
        else:
            harness.now += float(op[1])  # type: ignore[arg-type]
            harness.apply(harness.relay.tick(harness.now))
        harness.pump()
    # Not stuck: the honest members and a newcomer share an epoch and talk.
    assert harness.relay.state is RoomState.OPEN
    newcomer = harness.add_member("newcomer")
    for _ in range(3):  # a silent committer is replaced after its deadline
        harness.now += 11
        harness.apply(harness.relay.tick(harness.now))
        harness.pump()
    honest = [harness.members[alice], harness.members[newcomer]]
    assert all(m.state is MemberState.ACTIVE for m in honest)
    assert len({m.epoch for m in honest}) == 1
    harness.members[newcomer].send_text("still works")
    harness.pump()
    received = [e.text for e in harness.events[alice] if isinstance(e, MessageReceived)]
    assert "still works" in received
