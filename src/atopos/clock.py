"""The one place Atopos reads the time; everything else is handed a `Clock`, so tests can
move time by hand instead of sleeping (docs/architecture.md, "Clocks and randomness")."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the Unix epoch (expiry, lifetimes, rotation periods)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, timeouts, durations)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
