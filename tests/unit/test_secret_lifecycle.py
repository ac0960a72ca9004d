"""The secret lifecycle table (protocol/secret_lifecycle.py) is total and keeps its promises:
every (state, event) pair is either a row list ending in ALWAYS or declared unreachable,
only a live secret gives anything, a ticket id buys at most one view, and a secret with n
views gives exactly n bodies."""

from __future__ import annotations

import itertools

import pytest

from atopos.protocol.secret_lifecycle import (
    ALWAYS,
    TICKET_REDEEMED,
    TRANSITIONS,
    UNREACHABLE,
    Answer,
    Event,
    Facts,
    ImpossibleMove,
    SecretLifecycle,
    SecretState,
    next_move,
)

PAIRS = set(itertools.product(SecretState, Event))
FACTS = [
    Facts(views_left, is_ticket_redeemed, is_token_right)
    for views_left, is_ticket_redeemed, is_token_right in itertools.product(
        [1, 2, 3], [False, True], [False, True]
    )
]


def test_every_pair_is_covered_once() -> None:
    assert set(TRANSITIONS) | UNREACHABLE == PAIRS
    assert set(TRANSITIONS).isdisjoint(UNREACHABLE)


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS, key=str))
def test_each_row_list_ends_in_always_and_nothing_follows_it(
    state: SecretState, event: Event
) -> None:
    guards = [move.guard for move in TRANSITIONS[state, event]]
    assert guards[-1] is ALWAYS
    assert ALWAYS not in guards[:-1]
    assert len(set(guards)) == len(guards), "a guard twice: the second row is dead"


@pytest.mark.parametrize(("state", "event"), sorted(UNREACHABLE, key=str))
def test_unreachable_pairs_raise(state: SecretState, event: Event) -> None:
    with pytest.raises(ImpossibleMove):
        next_move(state, event, Facts())


def test_only_a_live_secret_gives_anything() -> None:
    giving = {Answer.BODY, Answer.INFO, Answer.ALLOWED, Answer.REFUSED}
    for (state, _), moves in TRANSITIONS.items():
        for move in moves:
            if move.answer in giving:
                assert state is SecretState.LIVE, (state, move)
            assert move.takes_view == (move.answer is Answer.BODY)
            # Every view records its ticket id but the last: nothing is left for it to buy.
            assert move.redeems_ticket == (
                move.answer is Answer.BODY and move.target is SecretState.LIVE
            )


def test_a_redeemed_ticket_is_refused_first_and_changes_nothing() -> None:
    for state in SecretState:
        first = TRANSITIONS[state, Event.CONSUME][0]
        assert first.guard is TICKET_REDEEMED
        assert (first.target, first.answer) == (state, Answer.TICKET_USED)
        assert not first.takes_view
        assert not first.redeems_ticket


def test_gone_is_left_only_by_create_and_expired_never_comes_back() -> None:
    for (state, event), moves in TRANSITIONS.items():
        targets = {move.target for move in moves}
        if state is SecretState.GONE and event is not Event.CREATE:
            assert targets == {SecretState.GONE}
        if state is SecretState.EXPIRED:
            assert SecretState.LIVE not in targets


def test_the_last_view_burns_and_no_other_view_does() -> None:
    for facts in FACTS:
        move = next_move(SecretState.LIVE, Event.CONSUME, facts)
        if facts.is_ticket_redeemed:
            assert move.answer is Answer.TICKET_USED
        elif facts.views_left == 1:
            assert (move.answer, move.target) == (Answer.BODY, SecretState.GONE)
        else:
            assert (move.answer, move.target) == (Answer.BODY, SecretState.LIVE)


@pytest.mark.parametrize("views", [1, 2, 5])
def test_n_views_give_n_bodies_then_gone(views: int) -> None:
    lifecycle = SecretLifecycle.created(views)
    answers = [lifecycle.handle(Event.CONSUME).answer for _ in range(views + 2)]
    assert answers == [Answer.BODY] * views + [Answer.GONE] * 2
    assert lifecycle.state is SecretState.GONE
    assert lifecycle.handle(Event.DELETE).answer is Answer.GONE


def test_expiry_then_sweep_or_delete_forgets() -> None:
    swept = SecretLifecycle.created(3)
    swept.handle(Event.EXPIRE)
    assert swept.handle(Event.READ).answer is Answer.GONE
    assert swept.handle(Event.CONSUME).answer is Answer.GONE
    assert swept.handle(Event.SWEEP).answer is Answer.BURNED
    assert not swept.is_stored
    deleted = SecretLifecycle.created(3)
    deleted.handle(Event.EXPIRE)
    assert deleted.handle(Event.DELETE).answer is Answer.BURNED
    assert deleted.handle(Event.SWEEP).answer is Answer.NOTHING


def test_manage_needs_the_token_and_a_live_secret() -> None:
    lifecycle = SecretLifecycle.created(1)
    assert lifecycle.handle(Event.MANAGE).answer is Answer.REFUSED
    assert lifecycle.handle(Event.MANAGE, is_token_right=True).answer is Answer.ALLOWED
    lifecycle.handle(Event.EXPIRE)
    assert lifecycle.handle(Event.MANAGE, is_token_right=True).answer is Answer.GONE
