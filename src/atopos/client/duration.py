"""Human durations for `--expires`: a whole number and one unit (30s, 10m, 1h, 7d, 2w)."""

from __future__ import annotations

import re

from atopos.errors import InvalidInput

__all__ = ["parse_duration"]

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Nine digits bound the number long before the server's own maximum does.
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in `text`; raises InvalidInput for anything but ``<positive number><s|m|h|d|w>``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            "A duration is a whole number followed by s, m, h, d or w, like 10m, 1h or 7d."
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise InvalidInput("A duration must be longer than zero.")
    return seconds
