"""A hypothesis state machine over whole rooms on the relay double: people join, talk,
re-key and leave in any order (the room may empty and be founded again), and every step
keeps the room's invariants (everyone present holds the same epoch and safety code, reads
every message sent while present, in order per sender, and nobody gets a refusal from an
honest relay)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tests.rooms_support import Room, open_room

from atopos.protocol.room_member import MemberState

NAMES = ["ana", "ben", "cy", "dee", "eli", "fay", "gus", "hal"]


class RoomLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.room: Room = open_room("ana", label="lifecycle")
        self.present = ["ana"]
        self.expected: dict[str, list[tuple[int, str]]] = {"ana": []}
        self.counter = 0

    def _index(self, name: str) -> int:
        index = self.room.members[name].member.index
        assert index is not None
        return index

    @precondition(lambda self: len(self.room.members) < len(NAMES))
    @rule()
    def join(self) -> None:
        name = NAMES[len(self.room.members)]
        self.room.join(name)
        self.present.append(name)
        self.expected[name] = []

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def say(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.present))
        self.counter += 1
        text = f"{name} says {self.counter}"
        self.room.say(name, text)
        for other in self.present:
            if other != name:
                self.expected[other].append((self._index(name), text))

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.present))
        self.room.members[name].member.update(0)
        self.room.relay.pump()

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.present))
        self.room.members[name].member.leave()
        self.room.relay.pump()
        self.present.remove(name)

    @rule()
    def wait(self) -> None:
        """Nothing happens (keeps a rule available once everyone has come and gone)."""

    @invariant()
    def everyone_present_agrees(self) -> None:
        members = [self.room.members[name] for name in self.present]
        if not members:
            return  # an empty room: the next joiner founds a new epoch chain
        assert all(c.member.state is MemberState.ACTIVE for c in members)
        assert len({c.member.epoch for c in members}) == 1
        assert len({c.member.safety_code for c in members}) == 1
        roster = {index for index, _ in members[0].member.members}
        assert roster == {self._index(name) for name in self.present}

    @invariant()
    def everyone_read_what_was_said(self) -> None:
        for name in self.present:
            assert self.room.texts(name) == self.expected[name]
            assert self.room.members[name].errors == []


TestRoomLifecycle = RoomLifecycle.TestCase
TestRoomLifecycle.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
