"""The critique loop's stop rules, exhaustively: every run ends, within max_rounds, with the best draft of all."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import loop
from schemas.records import MAX_ROUNDS

SCORES = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _check(trace: loop.Trace, rounds, max_rounds: int, threshold: float) -> None:
    used = rounds[: trace.rounds]
    assert 1 <= trace.rounds <= max_rounds
    assert trace.verdicts[:-1] == ("revise",) * (trace.rounds - 1)
    assert trace.verdicts[-1] in ("accept", "exhausted")
    best = max(max(r) for r in used)
    assert trace.best_score == best  # the result is the best draft of every round, not the last one
    assert used[trace.best_round][trace.best_draft] == best
    # the first occurrence of the best wins a tie (earlier rounds, then lower draft index)
    first = next((i, j) for i, r in enumerate(used) for j, s in enumerate(r) if s == best)
    assert (trace.best_round, trace.best_draft) == first
    last = max(used[-1])
    if trace.verdicts[-1] == "accept":
        assert last >= threshold
    else:
        assert last < threshold
        no_gain = trace.rounds > 1 and last <= max(max(r) for r in used[:-1]) + loop.MIN_IMPROVEMENT
        assert trace.rounds == max_rounds or no_gain
    for i, r in enumerate(used[:-1]):  # every round that was revised fell short and improved on the ones before
        assert max(r) < threshold
        if i > 0:
            assert max(r) > max(max(p) for p in used[:i]) + loop.MIN_IMPROVEMENT


@settings(max_examples=400, deadline=None)
@given(
    max_rounds=st.integers(1, MAX_ROUNDS),
    threshold=SCORES,
    rounds=st.lists(st.lists(SCORES, min_size=1, max_size=4), min_size=MAX_ROUNDS, max_size=MAX_ROUNDS),
)
def test_any_scores_terminate_within_max_rounds_with_the_best_draft(max_rounds, threshold, rounds):
    _check(loop.run(rounds, max_rounds, threshold), rounds, max_rounds, threshold)


def test_every_score_sequence_on_a_grid_terminates():
    # Exhaustive over a coarse grid: 4 score levels, 1 draft per round, up to MAX_ROUNDS rounds, every max_rounds
    # and threshold (4^5 * 5 * 4 runs); hypothesis above covers the drafts and the values in between.
    levels = (0.0, 0.3, 0.6, 0.9)
    for max_rounds in range(1, MAX_ROUNDS + 1):
        for threshold in (0.0, 0.5, 0.75, 1.0):
            for seq in itertools.product(levels, repeat=MAX_ROUNDS):
                rounds = [[s] for s in seq]
                _check(loop.run(rounds, max_rounds, threshold), rounds, max_rounds, threshold)


@pytest.mark.parametrize("round_, max_rounds, score, previous, verdict", [
    (0, 3, 0.8, None, "accept"),
    (0, 3, 0.5, None, "revise"),
    (0, 1, 0.5, None, "exhausted"),
    (1, 3, 0.6, 0.5, "revise"),
    (1, 3, 0.5, 0.5, "exhausted"),  # no improvement
    (1, 3, 0.4, 0.5, "exhausted"),
    (2, 3, 0.7, 0.5, "exhausted"),  # max_rounds
])
def test_decide(round_, max_rounds, score, previous, verdict):
    decision = loop.decide(round_, max_rounds, 0.75, score, previous)
    assert decision.verdict == verdict and decision.reason


@pytest.mark.parametrize("round_, max_rounds, score, previous, stop_reason", [
    (0, 3, 0.8, None, "score 0.8000 reached the threshold 0.7500"),
    (0, 3, 0.5, None, None),
    (2, 3, 0.7, 0.5, "max_rounds=3 reached"),
    (1, 3, 0.5, 0.5, "no improvement: 0.5000 after 0.5000"),
])
def test_a_decision_that_ends_the_loop_names_its_rule(round_, max_rounds, score, previous, stop_reason):
    assert loop.decide(round_, max_rounds, 0.75, score, previous).stop_reason == stop_reason


@pytest.mark.parametrize("round_, previous, verdict", [(0, None, "revise"), (2, None, "exhausted"),
                                                      (1, 0.9, "exhausted")])
def test_a_broken_draft_is_never_accepted_but_the_other_rules_still_apply(round_, previous, verdict):
    decision = loop.decide(round_, 3, 0.75, 0.9, previous, acceptable=False)
    assert decision.verdict == verdict
    assert loop.decide(round_, 3, 0.75, 0.9, previous).verdict != verdict  # the same round, acceptable, differs


@pytest.mark.parametrize("args", [(-1, 2, 0.5, 0.1, None), (0, 0, 0.5, 0.1, None), (0, MAX_ROUNDS + 1, 0.5, 0.1, None)])
def test_decide_rejects_impossible_rounds(args):
    with pytest.raises(ValueError):
        loop.decide(*args)


def test_rank_keeps_draft_order_on_ties():
    assert loop.rank([0.2, 0.9, 0.9, 0.1]) == [1, 2, 0, 3]
