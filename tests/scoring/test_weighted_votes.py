"""Weighted SC with real-valued scores (a PRM's, LaSeR's r_s, which may be negative or
above 1): the exact count, the Monte-Carlo estimate past it and the replay, each against
the reference's vote (``compute_weighted_sc``, sc-genrm-scaling ``eval_utils.py``
lines 355-400) re-implemented here, by brute force over every ordered draw or by the
reference's own ``random.sample`` calls."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest

from scoring.curves import (
    Pool,
    Sample,
    curves,
    group_answers,
    sampled_vote,
    score_weighted_sc,
    weighted_vote,
)

INVALID = "[invalidanswer]"


def vote_once(drawn, answers, weights, right):
    """One ordered draw as eval_utils:380-398 votes it: weights added per answer string
    in draw order, the first inserted of the best total wins; invalid answers never win
    (the reference's -1 sentinel, which only scores in [0, 1] keep below every total)."""
    totals: dict[str, Fraction] = {}
    for i in drawn:
        if answers[i] != INVALID:
            totals[answers[i]] = totals.get(answers[i], Fraction(0)) + Fraction(weights[i])
    if not totals:
        return 0.0
    return float(right[max(totals, key=totals.__getitem__)])


def brute_force(answers, weights, right, size):
    """The expectation over ``random.sample(range(n), size)``: every ordered draw equally
    likely, the totals in exact arithmetic."""
    draws = list(itertools.permutations(range(len(answers)), size))
    return sum(vote_once(d, answers, weights, right) for d in draws) / len(draws)


def random_problem(rng: random.Random, n: int, *, negative: bool = True):
    """Answers with ties and invalid ones; weights real-valued, some repeated, some
    negative or above 1 (LaSeR's r_s is not a probability)."""
    answers = [rng.choice(["7", "8", "9", INVALID]) for _ in range(n)]
    low = -0.6 if negative else 0.0
    palette = [round(rng.uniform(low, 1.4 if negative else 1.0), 3) for _ in range(3)]
    weights = [
        rng.choice(palette) if rng.random() < 0.4 else rng.uniform(low, 1.4) for _ in range(n)
    ]
    right = {"7": True, "8": False, "9": rng.random() < 0.3, INVALID: False}
    pool = Pool(
        tuple(Sample(None, False) if a == INVALID else Sample(a, right[a]) for a in answers)
    )
    return answers, weights, right, pool


@pytest.mark.parametrize("seed", range(12))
def test_the_exact_weighted_vote_equals_the_brute_force_expectation(seed: int) -> None:
    rng = random.Random(seed)
    answers, weights, right, pool = random_problem(rng, rng.randint(2, 7))
    groups, correct = group_answers(pool)
    for size in range(1, len(answers) + 1):
        ours = weighted_vote(groups, weights, correct, size)
        assert ours.how == "exact" and ours.error == 0.0
        assert ours.value == pytest.approx(brute_force(answers, weights, right, size), abs=1e-9)


def test_a_negative_total_still_beats_an_invalid_answer() -> None:
    answers = ["7", INVALID]
    weights = [-2.0, 0.3]
    right = {"7": True, INVALID: False}
    pool = Pool((Sample("7", True), Sample(None, False)))
    groups, correct = group_answers(pool)
    assert weighted_vote(groups, weights, correct, 2).value == 1.0
    assert brute_force(answers, weights, right, 2) == 1.0
    # and the replay: the reference's -1 sentinel would have made the invalid answer win
    assert score_weighted_sc(pool, weights, [2], mode="replay")[2].value == 1.0


def test_the_monte_carlo_estimate_covers_the_expectation_within_its_error() -> None:
    """Forced Monte-Carlo on problems small enough to count: every estimate within 4
    standard errors of the brute-force expectation, and about 95 % within 2."""
    rng = random.Random(7)
    within_two = total = 0
    for _ in range(30):
        answers, weights, right, pool = random_problem(rng, 8)
        groups, correct = group_answers(pool)
        size = rng.randint(2, 6)
        expected = brute_force(answers, weights, right, size)
        estimate = sampled_vote(
            groups, weights, correct, size, draws=3000, seed=rng.randint(0, 999)
        )
        assert estimate.how == "monte-carlo"
        if estimate.error == 0.0:  # every subset has the same outcome
            assert estimate.value == pytest.approx(expected, abs=1e-12)
            continue
        z = abs(estimate.value - expected) / estimate.error
        assert z < 4, (answers, weights, size)
        within_two += z < 2
        total += 1
    assert total >= 20 and within_two / total >= 0.85


def test_a_large_pool_gives_way_to_monte_carlo_that_agrees_with_the_references_draws() -> None:
    """64 solutions with real-valued scores: past exact counting, so Monte-Carlo, within
    its error (and the reference simulation's) of 20 000 of the reference's own draws."""
    rng = random.Random(3)
    answers, weights, right, pool = random_problem(rng, 64)
    groups, correct = group_answers(pool)
    for size in (8, 32):
        ours = weighted_vote(groups, weights, correct, size)
        assert ours.how == "monte-carlo" and ours.error > 0
        sim = random.Random(size)
        outcomes = [
            vote_once(sim.sample(range(64), size), answers, weights, right) for _ in range(20_000)
        ]
        theirs = float(np.mean(outcomes))
        theirs_error = float(np.std(outcomes, ddof=1) / math.sqrt(len(outcomes)))
        assert abs(ours.value - theirs) < 4 * math.hypot(ours.error, theirs_error)
    # the estimate is seeded: the same figure on every call
    assert weighted_vote(groups, weights, correct, 8) == weighted_vote(groups, weights, correct, 8)


def test_the_replay_equals_the_references_seed_33_draws() -> None:
    """Weights in [0, 1], where the reference's -1 sentinel and ours agree: 25
    ``random.sample`` calls per S after ``random.seed(33)``, S in the given order."""
    rng = random.Random(11)
    for _ in range(5):
        answers, weights, right, pool = random_problem(rng, 12, negative=False)
        sizes = [1, 2, 4, 8, 12]
        ours = score_weighted_sc(pool, weights, sizes, mode="replay")
        random.seed(33)
        for size in sizes:
            reps = 1 if size == len(answers) else 25
            draws = [random.sample(range(len(answers)), size) for _ in range(reps)]
            expected = float(np.mean([vote_once(d, answers, weights, right) for d in draws]))
            assert ours[size].value == expected and ours[size].how == "replay"


def test_curves_put_score_weighted_sc_on_the_prms_axis() -> None:
    rng = random.Random(5)
    problems = [random_problem(rng, 6) for _ in range(4)]
    pools = [p[3] for p in problems]
    scores = [p[1][:5] for p in problems]  # the first five of each problem scored
    points = curves(
        pools, sc_sizes=[1, 2], prm_scores=scores, prm_sizes=[1, 2, 4], prm_weighted=True
    )
    weighted = {p.solutions: p for p in points if p.method == "prm-sc"}
    assert sorted(weighted) == [1, 2, 4]
    for size, point in weighted.items():
        assert point.compute == 2.0 * size  # a prefill per solution, as the PRM's points
        expected = np.mean([brute_force(a[:5], w[:5], r, size) for a, w, r, _ in problems])
        assert point.success_rate == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="prm_scores"):
        curves(pools, sc_sizes=[1], prm_weighted=True)
