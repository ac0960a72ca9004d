from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.crypto.padding import MIN_PADDED_SIZE, padded_size, padme


def _padme_by_the_paper(length: int) -> int:
    # The formula exactly as written in the PETS 2019 paper, with floats (fine below 2**50).
    exponent = math.floor(math.log2(length))
    mantissa_bits = math.floor(math.log2(exponent)) + 1
    mask = 2 ** (exponent - mantissa_bits) - 1
    return int((length + mask) & ~mask)


@pytest.mark.parametrize(
    ("length", "padded"),
    [
        (0, 0),
        (1, 1),
        (2, 2),
        (9, 10),
        (255, 256),
        (512, 512),
        (513, 544),
        (600, 608),
        (1000, 1024),
        (1025, 1088),
        (3032, 3072),
        (5039, 5120),
        (1_000_000, 1_015_808),
        (2**30 + 1, 2**30 + 2**25),
    ],
)
def test_known_values(length: int, padded: int) -> None:
    assert padme(length) == padded


def test_matches_the_paper_formula() -> None:
    for length in range(4, 70_000):
        assert padme(length) == _padme_by_the_paper(length), length


@given(st.integers(min_value=4, max_value=2**45))
def test_matches_the_paper_formula_for_large_lengths(length: int) -> None:
    assert padme(length) == _padme_by_the_paper(length)


def test_monotone_and_never_shorter() -> None:
    previous = 0
    for length in range(70_000):
        padded = padme(length)
        assert padded >= length
        assert padded >= previous
        previous = padded


@given(st.integers(min_value=0, max_value=2**64))
def test_padding_is_a_fixed_point(length: int) -> None:
    padded = padme(length)
    assert padme(padded) == padded
    assert padded >= length


@given(st.integers(min_value=MIN_PADDED_SIZE, max_value=2**64))
def test_overhead_is_at_most_12_percent_above_512(length: int) -> None:
    assert padme(length) - length <= 0.12 * length


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**40))
def test_monotone_everywhere(first: int, second: int) -> None:
    low, high = sorted((first, second))
    assert padme(low) <= padme(high)


def test_padded_size_has_a_floor_of_512() -> None:
    assert padded_size(0) == 512
    assert padded_size(511) == 512
    assert padded_size(512) == 512
    assert padded_size(513) == 544


def test_negative_length_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        padme(-1)
