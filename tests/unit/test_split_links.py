"""Split links in the client: `--split K/N` parsing, splitting a share link and combining the
links a reader holds, with a sentence that says how many more are needed."""

from __future__ import annotations

import itertools
import os

import pytest

from atopos.client.links import InvalidLink, ShareLink, parse_reveal_link, parse_share_link
from atopos.client.split_links import (
    MoreSharesNeeded,
    combine_share_links,
    parse_split,
    split_share_link,
)
from atopos.errors import InvalidInput

LINK = ShareLink("https://atopos.example", "AAECAwQFBgcICQoLDA0ODw", bytes(range(32)))
OTHER = ShareLink("https://atopos.example", "_____________________w", bytes(range(32)))


def test_any_two_of_three_links_give_the_share_link_back() -> None:
    parts = split_share_link(LINK, threshold=2, count=3, random_bytes=os.urandom)
    texts = [str(part) for part in parts]
    assert len(set(texts)) == 3
    assert all(str(LINK).split("#")[0] in text for text in texts)
    for pair in itertools.permutations(texts, 2):
        assert combine_share_links([parse_reveal_link(text) for text in pair]) == LINK


def test_one_link_alone_says_how_many_more_are_needed() -> None:
    parts = split_share_link(LINK, threshold=3, count=5, random_bytes=os.urandom)
    with pytest.raises(MoreSharesNeeded) as caught:
        combine_share_links([parts[0]])
    assert caught.value.missing == 2
    assert caught.value.message == (
        "This secret is split into 5 links and any 3 open it; this is one, so 2 more split "
        "links are needed. Nothing was used."
    )
    with pytest.raises(MoreSharesNeeded) as caught:
        combine_share_links([parts[0], parts[0], parts[3]])
    assert caught.value.missing == 1
    assert "these are 2, so 1 more split link is needed" in caught.value.message


def test_links_of_different_secrets_or_splits_are_refused() -> None:
    first = split_share_link(LINK, threshold=2, count=3, random_bytes=os.urandom)
    again = split_share_link(LINK, threshold=2, count=3, random_bytes=os.urandom)
    other = split_share_link(OTHER, threshold=2, count=3, random_bytes=os.urandom)
    with pytest.raises(InvalidLink, match="different splits"):
        combine_share_links([first[0], again[1]])
    with pytest.raises(InvalidLink, match="different secrets"):
        combine_share_links([first[0], other[1]])
    with pytest.raises(InvalidLink, match="one share link, or the split links"):
        combine_share_links([first[0], LINK])


def test_a_split_link_is_not_taken_for_a_whole_share_link() -> None:
    part = str(split_share_link(LINK, threshold=2, count=2, random_bytes=os.urandom)[0])
    with pytest.raises(InvalidLink, match="one share of a split secret"):
        parse_share_link(part)
    assert parse_reveal_link(str(LINK)) == LINK
    damaged = part[:-60] + "A" + part[-59:]  # the format byte is no longer 1
    with pytest.raises(InvalidLink, match="damaged"):
        parse_reveal_link(damaged)


@pytest.mark.parametrize("text", ["2/3", " 3/5 ", "10/10", "2/2"])
def test_split_option_accepts(text: str) -> None:
    threshold, count = parse_split(text)
    assert f"{threshold}/{count}" == text.strip()


@pytest.mark.parametrize("text", ["1/3", "3/2", "2/11", "2", "2/", "a/b", "2/3/4", "-2/3", ""])
def test_split_option_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_split(text)
