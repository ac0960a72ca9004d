"""`--expires` durations: one whole number and one unit, nothing else."""

from __future__ import annotations

import pytest

from atopos.client.duration import parse_duration
from atopos.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("1h", 3600),
        ("1d", 86400),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        (" 90m ", 5400),
        ("007m", 420),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "10", "m", "1.5h", "-1h", "+1h", "1 h", "1H", "1y", "1h30m", "\u0661h", "1234567890s"],
)
def test_malformed_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(InvalidInput, match="whole number followed by"):
        parse_duration(text)


def test_zero_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="longer than zero"):
        parse_duration("0d")
