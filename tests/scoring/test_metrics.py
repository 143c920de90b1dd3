from __future__ import annotations

import math

import pytest

from scoring.labels import ratings_from_first_error
from scoring.metrics import (
    Candidate,
    aggregate,
    auroc,
    best_of_n,
    best_of_n_table,
    best_tau,
    first_error,
    majority_vote,
    min_on_final_share,
    pass_at_n,
    processbench,
    processbench_table,
    right_answer_wrong_process_rate,
    step_auroc,
    tau_sweep,
    tune_and_apply,
    weighted_vote,
)
from scoring.types import NO_PREDICTION


def test_it_predicts_the_first_step_below_tau() -> None:
    assert first_error([0.9, 0.6, 0.4, 0.1]) == 2
    assert first_error([0.9, 0.6, 0.4, 0.1], threshold=0.7) == 1
    assert first_error([0.9, 0.6]) == -1
    assert first_error([0.5, 0.2]) == 1  # 0.5 is not below 0.5
    assert first_error([0.9, math.nan]) == NO_PREDICTION


def test_it_computes_processbench_on_a_hand_worked_case() -> None:
    # 4 erroneous samples: labels 0, 2, 1, 3; predictions 0 (hit), 1 (early), -1 (miss), 3 (hit)
    # 3 correct samples: predictions -1 (hit), 2 (false alarm), -1 (hit)
    labels = [0, 2, 1, 3, -1, -1, -1]
    preds = [0, 1, -1, 3, -1, 2, -1]
    result = processbench(preds, labels)
    assert result.acc_err == pytest.approx(50.0)
    assert result.acc_cor == pytest.approx(200 / 3)
    assert result.f1 == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))  # 57.142857...
    assert result.f1 == pytest.approx(57.142857, abs=1e-5)
    assert (result.n_err, result.n_cor) == (4, 3)


def test_an_unusable_answer_is_wrong_in_both_splits() -> None:
    result = processbench([NO_PREDICTION, NO_PREDICTION], [1, -1])
    assert (result.acc_err, result.acc_cor) == (0.0, 0.0)
    assert math.isnan(result.f1)  # run_eval.py's 0 / 0


def test_an_empty_class_gives_nan_as_run_eval_does() -> None:
    only_errors = processbench([1, 0], [1, 2])
    assert only_errors.acc_err == 50.0 and math.isnan(only_errors.acc_cor)
    assert math.isnan(only_errors.f1)
    only_correct = processbench([-1, 0], [-1, -1])
    assert math.isnan(only_correct.acc_err) and only_correct.acc_cor == 50.0
    assert math.isnan(only_correct.f1)


def test_the_average_is_the_plain_mean_of_split_f1s() -> None:
    scores = {"a": [[0.9, 0.1], [0.9, 0.9]], "b": [[0.9, 0.9], [0.9, 0.9]]}
    labels = {"a": [1, -1], "b": [1, -1]}
    table = processbench_table(scores, labels)
    assert table["a"].f1 == pytest.approx(100.0)
    assert table["b"].f1 == 0.0
    assert table["average"].f1 == pytest.approx(50.0)
    # a split whose F1 is nan makes the average nan, as a mean of the four F1s would be
    table = processbench_table({**scores, "c": [[0.9, 0.9]]}, {**labels, "c": [1]})
    assert math.isnan(table["c"].f1) and math.isnan(table["average"].f1)


def test_it_sweeps_tau_and_tunes_on_one_split() -> None:
    # Scalar scores where only a tau in (0.3, 0.6] separates error from correct steps.
    scores = {"gsm8k": [[0.7, 0.3], [0.8, 0.7]], "math": [[0.65, 0.3, 0.2], [0.9, 0.61, 0.7]]}
    labels = {"gsm8k": [1, -1], "math": [1, -1]}
    sweep = dict(tau_sweep(scores["gsm8k"], labels["gsm8k"], taus=[0.2, 0.5, 0.9]))
    assert sweep[0.2].f1 == 0.0 and sweep[0.5].f1 == pytest.approx(100.0)
    assert math.isnan(sweep[0.9].f1)  # 0 on both classes: run_eval.py's 0 / 0
    tau, result = best_tau(scores["gsm8k"], labels["gsm8k"])
    assert tau == pytest.approx(0.31) and result.f1 == pytest.approx(100.0)
    tau, table = tune_and_apply(scores, labels, "gsm8k")
    assert tau == pytest.approx(0.31)
    assert table["math"].f1 == pytest.approx(100.0)


def test_auroc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2, 0.4]
    labels = [False, True, False, True, False, True, True, False]
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert math.isnan(auroc([0.1, 0.2], [True, True]))


def test_step_auroc_skips_steps_after_the_first_error() -> None:
    labels = [
        ratings_from_first_error(1, 3, correct=True, wrong=False),
        ratings_from_first_error(-1, 2, correct=True, wrong=False),
    ]
    assert labels == [[True, False, None], [True, True]]
    # the 0.95 after the error would make a perfect AUROC imperfect if it were counted
    assert step_auroc([[0.9, 0.1, 0.05], [0.8, 0.7]], labels) == 1.0
    assert step_auroc([[0.9, 0.75, 0.95], [0.8, 0.7]], labels) == pytest.approx(2 / 3)


def test_it_measures_how_often_the_minimum_is_on_the_final_step() -> None:
    assert min_on_final_share([[0.9, 0.1], [0.2, 0.9], [0.5, 0.5], [0.3]]) == pytest.approx(1 / 3)


def test_it_aggregates_step_scores() -> None:
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "product") == pytest.approx(0.36)
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    with pytest.raises(ValueError):
        aggregate(s, "max")


def test_best_of_n_votes_and_pass() -> None:
    problem = [
        Candidate("12", False, [0.9, 0.95]),
        Candidate("14", True, [0.9, 0.6]),
        Candidate("14", True, [0.2, 0.9]),
        Candidate("12", False, [0.3, 0.4]),
        Candidate("12", False, [0.1, 0.1]),
    ]
    assert best_of_n(problem, "min") is False  # 0.9 beats 0.6
    assert best_of_n(problem, "last") is False  # 0.95
    assert weighted_vote(problem, "min") is False  # 12: 0.9+0.3+0.1=1.3 vs 14: 0.6+0.2=0.8
    assert weighted_vote(problem, "last") is True  # 12: 0.95+0.4+0.1=1.45 vs 14: 0.6+0.9=1.5
    assert majority_vote(problem) is False
    assert pass_at_n(problem) is True
    table = best_of_n_table([problem, [Candidate("3", True, [0.5])]])
    assert table["pass"] == 100.0 and table["maj"] == 50.0 and table["weighted_vote_last"] == 100.0


def test_it_counts_right_answers_reached_by_a_wrong_process() -> None:
    assert right_answer_wrong_process_rate(
        [True, True, False, True], [-1, 2, 1, 0]
    ) == pytest.approx(2 / 3)
