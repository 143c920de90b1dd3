"""The figures from per-trace summaries (what the dashboard reads from the database)
equal the figures from full step-score lists, NaN scores and ties included."""

from __future__ import annotations

import math
import random
from dataclasses import astuple

import pytest

from scoring import metrics
from scoring.labels import ratings_from_first_error
from scoring.types import NO_PREDICTION


def _traces(seed: int, n: int = 300, nan_rate: float = 0.03) -> tuple[list[list[float]], list[int]]:
    rng = random.Random(seed)
    scores, labels = [], []
    for _ in range(n):
        length = rng.randint(1, 9)
        # A coarse grid makes ties with the thresholds and between steps common.
        row = [rng.randint(0, 20) / 20 for _ in range(length)]
        if rng.random() < nan_rate * length:
            row[rng.randrange(length)] = math.nan
        scores.append(row)
        labels.append(rng.choice([-1, *range(length)]))
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_processbench_and_sweep_from_summaries_equal_the_step_lists(seed):
    scores, labels = _traces(seed)
    summaries = [metrics.summarize(s, label) for s, label in zip(scores, labels, strict=True)]
    for tau in (0.0, 0.05, 0.3, 0.5, 0.55, 1.0, 1.01):
        direct = metrics.processbench([metrics.first_error(s, tau) for s in scores], labels)
        got = metrics.processbench_from_summaries(summaries, tau)
        assert astuple(got) == pytest.approx(astuple(direct), nan_ok=True), tau
    sweep = metrics.sweep_from_summaries(summaries)
    reference = metrics.tau_sweep(scores, labels)
    assert [t for t, _ in sweep] == [t for t, _ in reference]
    for (_, a), (_, b) in zip(sweep, reference, strict=True):
        assert (a.n_err, a.n_cor) == (b.n_err, b.n_cor)
        assert a.acc_err == pytest.approx(b.acc_err) and a.acc_cor == pytest.approx(b.acc_cor)
        assert a.f1 == pytest.approx(b.f1, nan_ok=True)
    assert metrics.best_from_sweep(sweep)[0] == metrics.best_tau(scores, labels)[0]


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matches_where_first_error_lands(seed):
    scores, labels = _traces(seed, nan_rate=0.0)
    for tau in (0.2, 0.5, 0.8):
        expected = {outcome: 0 for outcome in metrics.FIRST_ERROR_OUTCOMES}
        for s, label in zip(scores, labels, strict=True):
            predicted = metrics.first_error(s, tau)
            if label == -1:
                expected["all correct" if predicted == -1 else "false alarm"] += 1
            elif predicted == -1:
                expected["missed"] += 1
            else:
                key = "earlier" if predicted < label else "exact" if predicted == label else "later"
                expected[key] += 1
        summaries = [metrics.summarize(s, label) for s, label in zip(scores, labels, strict=True)]
        assert metrics.first_error_confusion(summaries, tau) == expected


def test_a_nan_step_is_never_a_right_prediction():
    summary = metrics.summarize([0.9, math.nan, 0.1], 2)
    assert metrics.first_error([0.9, math.nan, 0.1], 0.5) == NO_PREDICTION
    assert not metrics.summary_correct(summary, 0.5)
    assert not metrics.summary_correct(metrics.summarize([0.9, math.nan], -1), 0.5)
    assert not metrics.summary_correct(metrics.summarize([0.9, math.nan], 1), 0.5)


@pytest.mark.parametrize("seed", range(5))
def test_min_on_final_and_auroc_from_summaries_and_counts(seed):
    scores, labels = _traces(seed, nan_rate=0.0)
    summaries = [metrics.summarize(s, label) for s, label in zip(scores, labels, strict=True)]
    assert metrics.min_on_final_from_summaries(summaries) == metrics.min_on_final_share(scores)
    step_labels = [
        ratings_from_first_error(label, len(s), correct=True, wrong=False)
        for s, label in zip(scores, labels, strict=True)
    ]
    counts = metrics.step_label_counts(scores, labels)
    assert metrics.auroc_from_counts(counts) == pytest.approx(
        metrics.step_auroc(scores, step_labels)
    )
    fpr, tpr = metrics.roc_points(counts)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert fpr == sorted(fpr) and tpr == sorted(tpr)


@pytest.mark.parametrize("seed", range(5))
def test_best_of_n_from_aggregates_equals_best_of_n_table(seed):
    rng = random.Random(seed)
    problems, solutions = [], []
    for _ in range(60):
        group, sols = [], []
        for _ in range(rng.randint(2, 6)):
            steps = [rng.random() for _ in range(rng.randint(1, 6))]
            answer = rng.choice(["1", "2", "3", None])
            correct = answer == "1"
            group.append(metrics.Candidate(answer=answer, correct=correct, step_scores=steps))
            sols.append(
                metrics.Solution(
                    answer=answer, correct=correct, scores=metrics.solution_aggregates(steps)
                )
            )
        problems.append(group)
        solutions.append(sols)
    table = metrics.best_of_n_from_aggregates(solutions)
    for key, value in metrics.best_of_n_table(problems).items():
        assert table[key] == pytest.approx(value), key
    assert all(math.isnan(table[f"wrong_process_{how}"]) for how in metrics.AGGREGATIONS)


def test_wrong_process_is_the_share_of_right_picks_with_a_wrong_step():
    right_but_wrong_step = metrics.Solution("1", True, metrics.solution_aggregates([0.9, 0.8]), 1)
    wrong = metrics.Solution("2", False, metrics.solution_aggregates([0.2]), -1)
    right_clean = metrics.Solution("1", True, metrics.solution_aggregates([0.7]), -1)
    table = metrics.best_of_n_from_aggregates([[right_but_wrong_step, wrong], [wrong, right_clean]])
    assert table["bon_min"] == 100.0
    assert table["wrong_process_min"] == 50.0


def test_comparable_rounds_to_nine_significant_digits():
    assert metrics.comparable(0.1 + 0.2) == metrics.comparable(0.3)
    assert metrics.comparable(1234.5678912345) == 1234.56789
    assert metrics.comparable(math.nan) == -math.inf
    assert metrics.comparable(0.0) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_distinct_values_keep_their_order_after_rounding(seed):
    """What lets the dashboard's SQL pick among values ``distinct`` from the rest."""
    rng = random.Random(seed)
    checked = 0
    for _ in range(20000):
        a = rng.uniform(-2, 2) * 10 ** rng.randint(-12, 12)
        b = a * (1 + rng.choice([-1, 1]) * rng.uniform(0, 3e-7))
        if metrics.distinct(a, b):
            checked += 1
            assert (metrics.comparable(a) > metrics.comparable(b)) == (a > b), (a, b)
            assert metrics.comparable(a) != metrics.comparable(b)
    assert checked > 1000


def test_pick_takes_the_first_of_values_equal_at_nine_digits():
    assert metrics.pick([0.5, 0.7, 0.7 + 1e-12, 0.2]) == 1
    assert metrics.pick([math.nan, -math.inf]) == 0
    assert metrics.pick([0.1, 0.3, 0.1 + 0.2]) == 1
