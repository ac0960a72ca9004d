"""The bits a stamp is solved at (client/server_bits.py): 16 for a server this process has
not heard from, then what it last asked, for a bounded number of servers."""

from __future__ import annotations

import pytest

from atopos.client.server_bits import ServerBits
from atopos.protocol.access_path import DEFAULT_STAMP_BITS, AccessPath


def test_an_unknown_server_is_assumed_at_the_default_bits() -> None:
    assert ServerBits().assumed("https://a.example") == DEFAULT_STAMP_BITS == 16


def test_the_last_bits_a_server_asked_are_assumed_of_it_alone() -> None:
    bits = ServerBits()
    bits.learn("https://a.example", 20)
    bits.learn("https://a.example", 18)
    assert bits.assumed("https://a.example") == 18
    assert bits.assumed("https://b.example") == DEFAULT_STAMP_BITS


def test_the_least_recently_taught_server_is_forgotten_first() -> None:
    bits = ServerBits(capacity=2)
    bits.learn("https://a.example", 1)
    bits.learn("https://b.example", 2)
    bits.learn("https://a.example", 3)  # a is now the most recent
    bits.learn("https://c.example", 4)
    assert bits.assumed("https://b.example") == DEFAULT_STAMP_BITS
    assert (bits.assumed("https://a.example"), bits.assumed("https://c.example")) == (3, 4)


@pytest.mark.parametrize("answered", [-1, -64, 65, 2**64, True, 16.0, "16", None])
def test_bits_no_proof_of_work_can_have_are_not_remembered(answered: object) -> None:
    # A server answering `bits: -1` once must not break every later reveal from it.
    bits = ServerBits()
    bits.learn("https://a.example", 20)
    bits.learn("https://a.example", answered)  # type: ignore[arg-type]
    assert bits.assumed("https://a.example") == 20
    bits.learn("https://b.example", answered)  # type: ignore[arg-type]
    assert bits.assumed("https://b.example") == DEFAULT_STAMP_BITS
    # What is assumed can start a walk (a negative value would raise ValueError here).
    AccessPath(
        "AAECAwQFBgcICQoLDA0ODw",
        server="https://b.example",
        can_unlock=False,
        max_pow_bits=26,
        assumed_bits=bits.assumed("https://b.example"),
    ).start()


@pytest.mark.parametrize("answered", [0, 1, 40, 64])
def test_every_possible_bits_is_remembered(answered: int) -> None:
    bits = ServerBits()
    bits.learn("https://a.example", answered)
    assert bits.assumed("https://a.example") == answered
