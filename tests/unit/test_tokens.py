from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atopos.crypto import pow as proof_of_work
from atopos.crypto.tokens import InvalidToken, TokenKeys, ticket_id_for

SECRET = bytes(range(16))
OTHER = bytes(range(1, 17))
NOW = 1_800_000_000


@pytest.fixture
def keys() -> TokenKeys:
    return TokenKeys(os.urandom(32))


def test_challenge_round_trip(keys: TokenKeys) -> None:
    token = keys.issue_challenge(SECRET, NOW + 60, 12, b"saltsalt")
    opened = keys.open_challenge(token, SECRET, NOW)
    assert (opened.secret_id, opened.expires_at, opened.bits) == (SECRET, NOW + 60, 12)


def test_challenge_is_bound_to_secret_and_time(keys: TokenKeys) -> None:
    token = keys.issue_challenge(SECRET, NOW + 60, 12, b"saltsalt")
    with pytest.raises(InvalidToken):
        keys.open_challenge(token, OTHER, NOW)
    with pytest.raises(InvalidToken):
        keys.open_challenge(token, SECRET, NOW + 60)


def test_challenge_is_not_a_ticket(keys: TokenKeys) -> None:
    challenge = keys.issue_challenge(SECRET, NOW + 60, 12, b"saltsalt")
    ticket = keys.issue_ticket(SECRET, ticket_id_for(challenge), NOW + 60, NOW + 180)
    with pytest.raises(InvalidToken):
        keys.open_ticket(challenge, SECRET, NOW)
    with pytest.raises(InvalidToken):
        keys.open_challenge(ticket, SECRET, NOW)


def test_ticket_round_trip_and_expiry(keys: TokenKeys) -> None:
    tid = ticket_id_for("some challenge")
    token = keys.issue_ticket(SECRET, tid, NOW + 60, NOW + 180)
    assert len(token) == 88
    opened = keys.open_ticket(token, SECRET, NOW)
    assert (opened.ticket_id, opened.expires_at) == (tid, NOW + 60)
    assert opened.remember_until == NOW + 180
    with pytest.raises(InvalidToken):
        keys.open_ticket(token, SECRET, NOW + 60)
    with pytest.raises(InvalidToken):
        keys.open_ticket(token, OTHER, NOW)


def test_other_key_refuses(keys: TokenKeys) -> None:
    token = keys.issue_ticket(SECRET, b"t" * 16, NOW + 60, NOW + 180)
    with pytest.raises(InvalidToken):
        TokenKeys(os.urandom(32)).open_ticket(token, SECRET, NOW)


def test_previous_key_still_verifies_after_rotation() -> None:
    old, new = os.urandom(32), os.urandom(32)
    token = TokenKeys(old).issue_ticket(SECRET, b"t" * 16, NOW + 60, NOW + 180)
    assert TokenKeys(new, previous=old).open_ticket(token, SECRET, NOW).secret_id == SECRET
    with pytest.raises(InvalidToken):
        TokenKeys(new).open_ticket(token, SECRET, NOW)


def test_one_challenge_one_ticket_id() -> None:
    assert ticket_id_for("a") == ticket_id_for("a")
    assert ticket_id_for("a") != ticket_id_for("b")


@given(st.integers(min_value=0, max_value=87), st.integers(min_value=0, max_value=255))
def test_any_changed_character_is_refused(position: int, flip: int) -> None:
    keys = TokenKeys(b"k" * 32)
    token = keys.issue_ticket(SECRET, b"t" * 16, NOW + 60, NOW + 180)
    chars = list(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[(alphabet.index(chars[position]) + 1 + flip % 63) % 64]
    chars[position] = replacement
    forged = "".join(chars)
    if forged == token:
        return
    with pytest.raises(InvalidToken):
        keys.open_ticket(forged, SECRET, NOW)


@given(st.text(max_size=120))
def test_garbage_is_refused_not_crashing(text: str) -> None:
    keys = TokenKeys(b"k" * 32)
    with pytest.raises(InvalidToken):
        keys.open_ticket(text, SECRET, NOW)
    with pytest.raises(InvalidToken):
        keys.open_challenge(text, SECRET, NOW)


def test_pow_solution_meets_difficulty() -> None:
    challenge = b"challenge-text"
    nonce = proof_of_work.solve(challenge, 12)
    assert proof_of_work.verify(challenge, nonce, 12)
    # The smallest solution: every smaller nonce fails.
    assert not any(proof_of_work.verify(challenge, n, 12) for n in range(nonce))


def test_pow_zero_bits_accepts_anything_in_range() -> None:
    assert proof_of_work.verify(b"x", 0, 0)
    assert proof_of_work.verify(b"x", 2**64 - 1, 0)
    assert not proof_of_work.verify(b"x", 2**64, 0)
    assert not proof_of_work.verify(b"x", -1, 0)


def test_pow_matches_the_wire_definition() -> None:
    import hashlib

    challenge = "AbC-_123"
    nonce = proof_of_work.solve(challenge.encode(), 10)
    digest = hashlib.sha256(challenge.encode() + b":" + str(nonce).encode()).digest()
    assert proof_of_work.leading_zero_bits(digest) >= 10
