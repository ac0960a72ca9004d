"""tests/vectors/shamir.json against crypto/shamir.py (tests/browser/test_split_links.py runs
the same file against shamir.js): splits replay from the drawn randomness, every k-subset
gives the key back, invalid share sets are refused or counted short."""

from __future__ import annotations

import itertools
import json
import runpy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.client.links import KeyShareLink, parse_reveal_link
from atopos.crypto.shamir import InvalidShares, KeyShare, combine_key, shares_missing, split_key

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SHAMIR: dict[str, Any] = json.loads((VECTORS / "shamir.json").read_text(encoding="utf-8"))


def _replay(random_hex: str) -> Any:
    drawn = bytes.fromhex(random_hex)
    position = 0

    def random_bytes(size: int) -> bytes:
        nonlocal position
        position += size
        return drawn[position - size : position]

    return random_bytes


@pytest.mark.parametrize("vector", SHAMIR["splits"], ids=[v["name"] for v in SHAMIR["splits"]])
def test_split_vector(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key_hex"])
    shares = split_key(
        key,
        threshold=vector["threshold"],
        count=vector["count"],
        random_bytes=_replay(vector["random_hex"]),
    )
    assert [share.to_bytes().hex() for share in shares] == vector["shares_hex"]
    parsed = [KeyShare.from_bytes(bytes.fromhex(text)) for text in vector["shares_hex"]]
    for subset in itertools.combinations(parsed, vector["threshold"]):
        assert combine_key(list(subset)) == key
    for subset in itertools.combinations(parsed, vector["threshold"] - 1):
        assert shares_missing(list(subset)) == 1
    for text, share in zip(vector["links"], parsed, strict=True):
        link = parse_reveal_link(text)
        assert isinstance(link, KeyShareLink)
        assert link.share == share
        assert str(link) == text


@pytest.mark.parametrize("vector", SHAMIR["invalid"], ids=[v["name"] for v in SHAMIR["invalid"]])
def test_invalid_vector(vector: dict[str, Any]) -> None:
    if "missing" in vector:
        shares = [KeyShare.from_bytes(bytes.fromhex(text)) for text in vector["shares_hex"]]
        assert shares_missing(shares) == vector["missing"]
        with pytest.raises(InvalidShares):
            combine_key(shares)
        return

    def check() -> None:
        shares_missing([KeyShare.from_bytes(bytes.fromhex(text)) for text in vector["shares_hex"]])

    with pytest.raises(InvalidShares) as caught:
        check()
    assert vector["says"] in str(caught.value)


@given(
    key=st.binary(min_size=32, max_size=32),
    threshold_count=st.tuples(st.integers(2, 10), st.integers(2, 10)).filter(
        lambda t: t[0] <= t[1]
    ),
    seed=st.binary(min_size=8 + 9 * 32, max_size=8 + 9 * 32),
    data=st.data(),
)
def test_any_k_shares_give_the_key(
    key: bytes, threshold_count: tuple[int, int], seed: bytes, data: st.DataObject
) -> None:
    threshold, count = threshold_count
    shares = split_key(key, threshold=threshold, count=count, random_bytes=_replay(seed.hex()))
    chosen = data.draw(st.permutations(shares)).copy()[:threshold]
    assert combine_key(chosen) == key


def test_one_share_is_the_key_masked_by_a_random_line() -> None:
    """k = 2: share x is key XOR a1*x, so with a1 uniform any value is as likely for any key:
    over all 256 values of a1 every byte value appears exactly once (nothing is revealed)."""
    for key_byte in (0x00, 0x5A, 0xFF):
        seen = set()
        for a1 in range(256):
            random = bytes(8) + bytes([a1]) * 32
            share = split_key(
                bytes([key_byte]) * 32, threshold=2, count=2, random_bytes=_replay(random.hex())
            )[0]
            seen.add(share.value[0])
        assert seen == set(range(256))


def test_the_file_is_what_its_generator_writes() -> None:
    generator = runpy.run_path(str(VECTORS / "generate_shamir_vectors.py"))
    assert generator["build"]() == SHAMIR


def test_two_shares_of_three_are_uniform_whatever_the_key() -> None:
    """k = 3, the shares at x = 2 and x = 3: over all 65536 choices of (a1, a2) every pair of
    share bytes appears exactly once, for any key byte, so two shares pin nothing (this also
    checks the multiplication by x != 1, which the k = 2, x = 1 case above does not)."""
    for key_byte in (0x00, 0xA7):
        pairs = set()
        for split in range(65536 // 32):
            a1 = bytes((split * 32 + i) >> 8 for i in range(32))
            a2 = bytes((split * 32 + i) & 0xFF for i in range(32))
            shares = split_key(
                bytes([key_byte]) * 32,
                threshold=3,
                count=3,
                random_bytes=_replay((bytes(8) + a1 + a2).hex()),
            )
            pairs.update(zip(shares[1].value, shares[2].value, strict=True))
        assert len(pairs) == 65536
