"""``evaluate`` against ProcessBench's ``code/run_eval.py`` metric lines, re-implemented here
with numpy as there: accuracies over error and correct samples, their F1, NaN for an empty
class; and the table's average row as the paper's "Avg. F1" (the mean of split F1s)."""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

from scoring.cli import main
from scoring.metrics import processbench, processbench_table


def _run_eval_metrics(predictions: list[int], labels: list[int]) -> tuple[float, float, float]:
    res_data = [
        {"label": label, "match": pred == label}
        for pred, label in zip(predictions, labels, strict=True)
    ]
    error_data = [e for e in res_data if e["label"] != -1]
    correct_data = [e for e in res_data if e["label"] == -1]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # np.mean([]) warns and gives nan
        acc1 = np.mean([e["match"] for e in error_data]) * 100
        acc2 = np.mean([e["match"] for e in correct_data]) * 100
        f1 = 2 * acc1 * acc2 / (acc1 + acc2)
    return float(acc1), float(acc2), float(f1)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


CASES = [
    ([0, 1, -1, 3, -1, 2, -1], [0, 2, 1, 3, -1, -1, -1]),
    ([1, 2], [1, 3]),  # no correct traces
    ([-1, 0], [-1, -1]),  # no erroneous traces
    ([0, -1], [1, -1]),  # 0 on both: numpy's 0 / 0
    ([-2, -2], [1, -1]),  # no usable answers
    ([-1, -1, 2], [-1, 0, 2]),
]


@pytest.mark.parametrize(("predictions", "labels"), CASES)
def test_it_computes_the_metric_as_run_eval_does(predictions, labels) -> None:
    result = processbench(predictions, labels)
    expected = _run_eval_metrics(predictions, labels)
    assert all(
        _same(a, b)
        for a, b in zip((result.acc_err, result.acc_cor, result.f1), expected, strict=True)
    )


def test_it_agrees_with_run_eval_on_random_splits() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 12)
        labels = [rng.choice([-1, -1, 0, 1, 2, 3]) for _ in range(n)]
        predictions = [rng.choice([-2, -1, 0, 1, 2, 3]) for _ in range(n)]
        result = processbench(predictions, labels)
        expected = _run_eval_metrics(predictions, labels)
        assert all(
            _same(a, b)
            for a, b in zip((result.acc_err, result.acc_cor, result.f1), expected, strict=True)
        )


def test_the_average_row_is_the_mean_of_split_f1s() -> None:
    scores = {
        "gsm8k": [[0.9, 0.1], [0.9, 0.9], [0.2, 0.9]],
        "math": [[0.9, 0.2, 0.1], [0.9, 0.9, 0.8], [0.9, 0.9, 0.9]],
    }
    labels = {"gsm8k": [1, -1, 0], "math": [2, -1, -1]}
    table = processbench_table(scores, labels)
    f1s = [
        _run_eval_metrics([_first_below(s, 0.5) for s in scores[split]], labels[split])[2]
        for split in scores
    ]
    assert table["average"].f1 == pytest.approx(float(np.mean(f1s)))
    assert table["average"].f1 != pytest.approx(
        2
        * table["average"].acc_err
        * table["average"].acc_cor
        / (table["average"].acc_err + table["average"].acc_cor)
    )


def _first_below(scores: list[float], tau: float) -> int:
    return next((i for i, s in enumerate(scores) if s < tau), -1)


def test_evaluate_prints_nan_for_a_split_without_correct_traces(tmp_path: Path, capsys) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        "\n".join(
            json.dumps({"id": f"g-{i}", "problem": "q", "steps": ["a", "b"], "label": label})
            for i, label in enumerate([1, 0])
        )
    )
    scores = tmp_path / "scores.jsonl"
    scores.write_text(
        json.dumps({"id": "g-0", "scores": [0.8, 0.3]})
        + "\n"
        + json.dumps({"id": "g-1", "scores": [0.9, 0.7]})
    )
    assert main(["evaluate", "--scores", str(scores), "--gold", str(gold)]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    # acc_err 50.0 (g-0 hit at step 1, g-1 missed); acc_cor and F1 nan, as run_eval.py prints
    assert row[1:6] == ["2", "0", "50.0", "nan", "nan"]
