"""Split links: a share link's key cut into n key shares, any k of which open the secret.

`split_share_link` turns one share link into n split links (docs/protocol/links.md,
"Split links"); `combine_share_links` turns the links a reader holds back into the share
link, or says how many more are needed. Both run before any request: a reader short of
shares has asked the server for nothing, so nothing is spent.
"""

from __future__ import annotations

from collections.abc import Sequence

from atopos.client.links import InvalidLink, KeyShareLink, ShareLink
from atopos.crypto.randomness import RandomBytes
from atopos.crypto.shamir import (
    MAX_SHARES,
    MIN_THRESHOLD,
    InvalidShares,
    combine_key,
    shares_missing,
    split_key,
)
from atopos.errors import InvalidInput

__all__ = [
    "MoreSharesNeeded",
    "combine_share_links",
    "parse_split",
    "split_share_link",
]


class MoreSharesNeeded(InvalidInput):
    """Fewer than k distinct shares: `missing` more split links are needed."""

    def __init__(self, *, missing: int, threshold: int, count: int, held: int) -> None:
        self.missing = missing
        self.threshold = threshold
        self.count = count
        links = "link" if missing == 1 else "links"
        super().__init__(
            f"This secret is split into {count} links and any {threshold} open it; "
            f"{'this is one' if held == 1 else f'these are {held}'}, so {missing} more split "
            f"{links} {'is' if missing == 1 else 'are'} needed. Nothing was used."
        )


def parse_split(text: str) -> tuple[int, int]:
    """`--split K/N` as (k, n), with 2 <= k <= n <= 10; InvalidInput otherwise."""
    threshold_text, sep, count_text = text.strip().partition("/")
    if not (sep and threshold_text.isdecimal() and count_text.isdecimal()):
        raise InvalidInput("--split takes K/N, like 2/3: any K of the N links open the secret.")
    threshold, count = int(threshold_text), int(count_text)
    if not MIN_THRESHOLD <= threshold <= count <= MAX_SHARES:
        raise InvalidInput(f"--split K/N needs 2 <= K <= N <= {MAX_SHARES}, like 2/3.")
    return threshold, count


def split_share_link(
    link: ShareLink, *, threshold: int, count: int, random_bytes: RandomBytes
) -> list[KeyShareLink]:
    """`count` split links of `link`, any `threshold` of which give it back."""
    shares = split_key(link.link_key, threshold=threshold, count=count, random_bytes=random_bytes)
    return [KeyShareLink(link.server, link.secret_id, share) for share in shares]


def combine_share_links(links: Sequence[ShareLink | KeyShareLink]) -> ShareLink:
    """The share link that `links` stand for: a whole share link as it is, or enough split
    links of one secret combined. MoreSharesNeeded when too few, InvalidLink when they do
    not belong together."""
    if not links:
        raise InvalidLink("No share link was given.")
    first = links[0]
    if any((link.server, link.secret_id) != (first.server, first.secret_id) for link in links):
        raise InvalidLink("These links are for different secrets; give the links of one secret.")
    whole = [link for link in links if isinstance(link, ShareLink)]
    if whole:
        if any(link.link_key != whole[0].link_key for link in whole) or len(whole) < len(links):
            raise InvalidLink("Give one share link, or the split links of one secret.")
        return whole[0]
    shares = [link.share for link in links if isinstance(link, KeyShareLink)]
    try:
        missing = shares_missing(shares)
        if missing:
            raise MoreSharesNeeded(
                missing=missing,
                threshold=shares[0].threshold,
                count=shares[0].count,
                held=shares[0].threshold - missing,
            )
        return ShareLink(first.server, first.secret_id, combine_key(shares))
    except InvalidShares as error:
        raise InvalidLink(f"These split links do not belong together: {error}") from None
