"""The recovery phrase: the 32-byte device seed as 24 BIP39 words (English list).

The seed is the phrase's BIP39 *entropy* (256 bits + an 8-bit SHA-256 checksum, 11 bits per
word); BIP39's PBKDF2 "seed" step is not used. The `mnemonic` library (the BIP39 reference
implementation) does the encoding. The phrase is shown only on the device and never sent.
"""

from __future__ import annotations

import functools
import unicodedata

from mnemonic import Mnemonic

from atopos.crypto.device import DEVICE_SEED_BYTES
from atopos.errors import InvalidInput

__all__ = ["PHRASE_WORDS", "InvalidPhrase", "phrase_to_seed", "seed_to_phrase"]

PHRASE_WORDS = 24


class InvalidPhrase(InvalidInput):
    """A recovery phrase that is not 24 words of the list with a matching checksum."""


@functools.cache
def _english() -> Mnemonic:
    return Mnemonic("english")


def seed_to_phrase(seed: bytes) -> str:
    """The 24 words of `seed`, separated by single spaces."""
    if len(seed) != DEVICE_SEED_BYTES:
        raise ValueError(f"a device seed is {DEVICE_SEED_BYTES} bytes")
    return _english().to_mnemonic(bytes(seed))


def phrase_to_seed(text: str) -> bytes:
    """The seed of a phrase typed or pasted by a person: any white space between words,
    any letter case. InvalidPhrase (one sentence, never echoing a word) otherwise."""
    words = unicodedata.normalize("NFKD", text).lower().split()
    if len(words) != PHRASE_WORDS:
        raise InvalidPhrase(
            f"A recovery phrase has {PHRASE_WORDS} words and this one has {len(words)}."
        )
    known = frozenset(_english().wordlist)
    for position, word in enumerate(words, start=1):
        if word not in known:
            raise InvalidPhrase(
                f"Word {position} of the recovery phrase is not in the word list; "
                "check its spelling."
            )
    try:
        return bytes(_english().to_entropy(words))
    except (ValueError, LookupError):
        raise InvalidPhrase(
            "The recovery phrase does not check out: a word is wrong or out of order."
        ) from None
