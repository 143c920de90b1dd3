"""LaSeR's self-verification figures (``RUCBM/LaSeR`` ``src/calculate_self_rewarding_scores.py``
lines 304-373), re-implemented here line by line, against ``scoring.metrics.self_verification``
and ``python -m scoring evaluate --self-verification``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from scoring.cli import main
from scoring.metrics import self_verification


def reference(scores: list[float], accs: list[bool]) -> tuple[float, float, float, float]:
    """The "all" branch: counts as lines 328-338, accuracies and F1 as lines 365-368."""
    correct_hits = correct_total = wrong_hits = wrong_total = 0
    y_true, y_pred = [], []
    for acc, score in zip(accs, scores, strict=True):
        if acc:
            correct_total += 1
            if score > 0.5:
                correct_hits += 1
        else:
            wrong_total += 1
            if score <= 0.5:
                wrong_hits += 1
        y_true.append(int(acc))
        y_pred.append(int(score > 0.5))
    true_acc = correct_hits / correct_total if correct_total > 0 else 0.0
    false_acc = wrong_hits / wrong_total if wrong_total > 0 else 0.0
    overall = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)
    f1 = 2 * true_acc * false_acc / (true_acc + false_acc) if true_acc + false_acc > 0 else 0.0
    return true_acc, false_acc, overall, f1


@pytest.mark.parametrize("seed", range(8))
def test_it_equals_the_references_lines(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    # r_s around the 0.5 threshold, negative and above 1, some exactly 0.5
    scores = [rng.choice([0.5, round(rng.uniform(-1.0, 2.0), 2)]) for _ in range(n)]
    accs = [rng.random() < rng.random() for _ in range(n)]
    ours = self_verification(scores, accs)
    true_acc, false_acc, overall, f1 = reference(scores, accs)
    assert (ours.acc_correct, ours.acc_wrong) == pytest.approx((100 * true_acc, 100 * false_acc))
    assert (ours.accuracy, ours.f1) == pytest.approx((100 * overall, 100 * f1))
    assert ours.n_correct == sum(accs) and ours.n_wrong == n - sum(accs)


def test_evaluate_prints_the_self_verification_table(tmp_path: Path, capsys) -> None:
    rng = random.Random(3)
    gold = tmp_path / "gold.jsonl"
    scores = tmp_path / "laser.jsonl"
    records, rows, expected = [], [], {}
    for split in ("math", "gsm8k"):
        r_s, accs = [], []
        for i in range(30):
            acc = rng.random() < 0.5
            steps = rng.randint(1, 4)
            value = round(rng.uniform(-0.5, 1.5), 3)
            records.append(
                {
                    "id": f"{split}-{i}",
                    "problem": "q",
                    "steps": ["s"] * steps,
                    "label": -1 if acc else 0,
                    "final_answer_correct": acc,
                    "split": split,
                }
            )
            rows.append({"id": f"{split}-{i}", "scores": [value] * steps})
            r_s.append(value)
            accs.append(acc)
        expected[split] = reference(r_s, accs)
    gold.write_text("".join(json.dumps(r) + "\n" for r in records))
    scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["evaluate", "--scores", str(scores), "--gold", str(gold), "--self-verification"])
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Self-verification"))
    header = lines[start + 1].split()
    assert header == ["split", "n_cor", "n_wrong", "acc_cor", "acc_wrong", "acc", "F1"]
    table = {line.split()[0]: line.split() for line in lines[start + 2 :]}
    assert set(table) == {"math", "gsm8k", "all"}
    for split, (true_acc, false_acc, overall, f1) in expected.items():
        row = table[split]
        assert [float(x) for x in row[3:]] == [
            round(100 * true_acc, 1),
            round(100 * false_acc, 1),
            round(100 * overall, 1),
            round(100 * f1, 1),
        ]
    # without the flag, no such table
    main(["evaluate", "--scores", str(scores), "--gold", str(gold)])
    assert "Self-verification" not in capsys.readouterr().out
