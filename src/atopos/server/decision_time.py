"""The time a node takes its decisions at: the wall clock, but never below the store's sweep
floor and never back between two requests (docs/protocol/access.md, "Clock steps").

A redeemed ticket id (or stamp id) is remembered until no ticket of its challenge (or the
stamp) can be valid; a sweep then forgets it, up to a time S it stores as the floor. If the
wall clock later stepped back below S (an NTP step, a VM restored, an operator's `date`),
that ticket would be valid again and its id unknown: a second view. Deciding at
`max(clock, floor)` keeps it expired. The floor is read from the store at start and after
every sweep this process runs (which also shows other workers' sweeps); the store itself
refuses a ticket id at or below the floor (storage/sqlite.py), which covers a worker that
has not read the latest floor yet.
"""

from __future__ import annotations

from atopos.clock import Clock

__all__ = ["DecisionTime"]


class DecisionTime:
    """Whole Unix seconds that never go back: the latest of the clock's readings and of the
    floors it was raised to. Used on the event loop's thread only (no lock)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._latest = 0

    def now(self) -> int:
        wall = int(self._clock.now())
        if wall > self._latest:
            self._latest = wall
        return self._latest

    def raise_floor(self, floor: int) -> None:
        """No decision from now on at a time before `floor` (a lower one changes nothing)."""
        if floor > self._latest:
            self._latest = floor
