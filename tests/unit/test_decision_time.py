"""The node's decision time (server/decision_time.py): the clock, never back between calls
and never below a floor it was raised to; a lower floor changes nothing."""

from __future__ import annotations

from atopos.server.decision_time import DecisionTime


class _SetClock:
    """A wall clock the test sets, backwards too."""

    def __init__(self, now: float) -> None:
        self.wall = now

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return 0.0


def test_a_clock_stepped_back_does_not_take_the_decision_time_back() -> None:
    clock = _SetClock(1000.7)
    decisions = DecisionTime(clock)
    assert decisions.now() == 1000
    clock.wall = 400.0
    assert decisions.now() == 1000
    clock.wall = 1005.2
    assert decisions.now() == 1005


def test_the_floor_raises_the_decision_time_and_a_lower_one_changes_nothing() -> None:
    clock = _SetClock(1000.0)
    decisions = DecisionTime(clock)
    decisions.raise_floor(1500)
    assert decisions.now() == 1500
    decisions.raise_floor(1200)
    assert decisions.now() == 1500
    clock.wall = 1600.0
    assert decisions.now() == 1600
