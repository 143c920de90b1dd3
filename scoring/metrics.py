"""The metrics the PRM literature reports, on plain lists (no numpy needed).

Conventions: step indices are 0-based; a first-error label of -1 means "all steps
correct"; percentages are in 0..100 as in the ProcessBench paper.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scoring.types import NO_PREDICTION

DEFAULT_TAUS: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(1, 100))


def first_error(scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step scored below ``threshold``, -1 if none.

    A NaN score means the scorer gave no verdict (an unparseable critic answer), which
    yields :data:`~scoring.types.NO_PREDICTION` so that it counts as wrong in every split.

    >>> first_error([0.9, 0.7, 0.2, 0.1])
    2
    >>> first_error([0.9, 0.8], threshold=0.85)
    1
    """
    for index, score in enumerate(scores):
        if math.isnan(score):
            return NO_PREDICTION
        if score < threshold:
            return index
    return -1


@dataclass(frozen=True)
class ProcessBenchResult:
    """One split's ProcessBench numbers, in percent."""

    acc_err: float
    acc_cor: float
    f1: float
    n_err: int
    n_cor: int


def processbench(predictions: Sequence[int], labels: Sequence[int]) -> ProcessBenchResult:
    """ProcessBench's metric as ``code/run_eval.py`` computes it: accuracy on erroneous
    samples (predicted index equals the label exactly), accuracy on correct samples
    (predicted -1), and ``2 * acc1 * acc2 / (acc1 + acc2)``.

    As there (``np.mean`` of an empty list, then numpy's 0 / 0), an accuracy over an empty
    class is NaN, and so is F1 when either accuracy is NaN or both are 0.

    >>> processbench([2, -1], [2, 1])
    ProcessBenchResult(acc_err=50.0, acc_cor=nan, f1=nan, n_err=2, n_cor=0)
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    err = [pred == label for pred, label in zip(predictions, labels, strict=True) if label != -1]
    cor = [pred == -1 for pred, label in zip(predictions, labels, strict=True) if label == -1]
    acc_err = 100.0 * sum(err) / len(err) if err else math.nan
    acc_cor = 100.0 * sum(cor) / len(cor) if cor else math.nan
    total = acc_err + acc_cor
    f1 = 2 * acc_err * acc_cor / total if total else math.nan
    return ProcessBenchResult(acc_err, acc_cor, f1, len(err), len(cor))


def processbench_table(
    scores: Mapping[str, Sequence[Sequence[float]]],
    labels: Mapping[str, Sequence[int]],
    thresholds: Mapping[str, float] | float = 0.5,
) -> dict[str, ProcessBenchResult]:
    """Per-split results plus ``"average"``: the plain mean over splits of each column, as
    the ProcessBench paper's "Avg. F1" averages the four splits' F1 (not an F1 of averaged
    accuracies); NaN in a split makes its column's average NaN."""
    table: dict[str, ProcessBenchResult] = {}
    for split in scores:
        tau = thresholds if isinstance(thresholds, int | float) else thresholds[split]
        preds = [first_error(s, tau) for s in scores[split]]
        table[split] = processbench(preds, labels[split])
    if table:
        rows = list(table.values())
        table["average"] = ProcessBenchResult(
            acc_err=sum(r.acc_err for r in rows) / len(rows),
            acc_cor=sum(r.acc_cor for r in rows) / len(rows),
            f1=sum(r.f1 for r in rows) / len(rows),
            n_err=sum(r.n_err for r in rows),
            n_cor=sum(r.n_cor for r in rows),
        )
    return table


def tau_sweep(
    scores: Sequence[Sequence[float]], labels: Sequence[int], taus: Iterable[float] = DEFAULT_TAUS
) -> list[tuple[float, ProcessBenchResult]]:
    """ProcessBench result at each threshold."""
    return [(tau, processbench([first_error(s, tau) for s in scores], labels)) for tau in taus]


def best_tau(
    scores: Sequence[Sequence[float]], labels: Sequence[int], taus: Iterable[float] = DEFAULT_TAUS
) -> tuple[float, ProcessBenchResult]:
    """The threshold with the highest F1 (the lowest such tau on ties; a NaN F1 ranks
    below every number, so it only wins when every F1 is NaN)."""

    def rank(pair: tuple[float, ProcessBenchResult]) -> tuple[float, float]:
        f1 = pair[1].f1
        return (-math.inf if math.isnan(f1) else f1, -pair[0])

    return max(tau_sweep(scores, labels, taus), key=rank)


def tune_and_apply(
    scores: Mapping[str, Sequence[Sequence[float]]],
    labels: Mapping[str, Sequence[int]],
    tune_split: str,
    taus: Iterable[float] = DEFAULT_TAUS,
) -> tuple[float, dict[str, ProcessBenchResult]]:
    """Tune tau on one split and apply it to all (ProcessBench tunes on GSM8K)."""
    tau, _ = best_tau(scores[tune_split], labels[tune_split], taus)
    return tau, processbench_table(scores, labels, tau)


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties
    counting one half (Mann-Whitney U). NaN when one class is empty."""
    pairs = [(s, bool(p)) for s, p in zip(scores, positives, strict=True) if not math.isnan(s)]
    n_pos = sum(p for _, p in pairs)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    pairs.sort(key=lambda pair: pair[0])
    rank_sum = 0.0
    i = 0
    while i < len(pairs):  # average ranks over tied scores
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2
        rank_sum += mean_rank * sum(p for _, p in pairs[i:j])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def step_labels_from_first_error(first_error_step: int, n_steps: int) -> list[bool | None]:
    """Step correctness implied by a ProcessBench label: steps before the first error are
    correct, the first error is wrong, later steps are unknown (None)."""
    if first_error_step == -1:
        return [True] * n_steps
    return [True] * first_error_step + [False] + [None] * (n_steps - first_error_step - 1)


def step_auroc(
    scores: Sequence[Sequence[float]], step_labels: Sequence[Sequence[bool | None]]
) -> float:
    """AUROC of step scores against step labels (True = correct), unknown steps skipped."""
    flat_scores: list[float] = []
    flat_labels: list[bool] = []
    for trace_scores, trace_labels in zip(scores, step_labels, strict=True):
        for score, label in zip(trace_scores, trace_labels, strict=False):
            if label is not None:
                flat_scores.append(score)
                flat_labels.append(label)
    return auroc(flat_scores, flat_labels)


def min_on_final_share(scores: Sequence[Sequence[float]]) -> float:
    """Share of traces (with 2+ steps) whose lowest score is on the final step, ties to the
    earliest step. Qwen found this is high for many PRMs: they judge the answer, not the process."""
    eligible = [s for s in scores if len(s) >= 2]
    if not eligible:
        return math.nan
    hits = sum(min(range(len(s)), key=lambda i: (s[i], i)) == len(s) - 1 for s in eligible)
    return hits / len(eligible)


AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": lambda s: min(s) if s else math.nan,
    "product": lambda s: math.prod(s) if s else math.nan,
    "last": lambda s: s[-1] if s else math.nan,
    "mean": lambda s: sum(s) / len(s) if s else math.nan,
}


def aggregate(step_scores: Sequence[float], how: str = "min") -> float:
    """A solution score from step scores: min, product (PRM800K), last (MC-trained PRMs), mean."""
    try:
        return AGGREGATIONS[how](step_scores)
    except KeyError:
        raise ValueError(
            f"unknown aggregation {how!r}; choose one of {sorted(AGGREGATIONS)}"
        ) from None


@dataclass(frozen=True)
class Candidate:
    """One of N sampled solutions to a problem, for best-of-N."""

    answer: Hashable
    correct: bool
    step_scores: Sequence[float]


def best_of_n(candidates: Sequence[Candidate], how: str = "min") -> bool:
    """Whether the candidate with the highest aggregated score is correct (first on ties)."""
    best = max(
        range(len(candidates)), key=lambda i: (aggregate(candidates[i].step_scores, how), -i)
    )
    return candidates[best].correct


def _answer_correct(candidates: Sequence[Candidate], answer: Hashable) -> bool:
    return any(c.correct for c in candidates if c.answer == answer)


def weighted_vote(candidates: Sequence[Candidate], how: str = "min") -> bool:
    """PRM-weighted majority vote: the answer with the largest summed score wins."""
    totals: dict[Hashable, float] = defaultdict(float)
    for c in candidates:
        if c.answer is not None:
            totals[c.answer] += aggregate(c.step_scores, how)
    if not totals:
        return False
    return _answer_correct(candidates, max(totals, key=lambda a: totals[a]))


def majority_vote(candidates: Sequence[Candidate]) -> bool:
    """maj@N: the most frequent answer (first seen on ties) is correct."""
    counts = Counter(c.answer for c in candidates if c.answer is not None)
    if not counts:
        return False
    return _answer_correct(candidates, counts.most_common(1)[0][0])


def pass_at_n(candidates: Sequence[Candidate]) -> bool:
    """pass@N: some candidate is correct."""
    return any(c.correct for c in candidates)


def best_of_n_table(problems: Sequence[Sequence[Candidate]]) -> dict[str, float]:
    """Accuracy (percent) over problems for every selection rule at the problems' N."""
    if not problems:
        return {}
    rules: dict[str, Callable[[Sequence[Candidate]], bool]] = {}
    for how in AGGREGATIONS:
        rules[f"bon_{how}"] = lambda c, how=how: best_of_n(c, how)
        rules[f"weighted_vote_{how}"] = lambda c, how=how: weighted_vote(c, how)
    rules["maj"] = majority_vote
    rules["pass"] = pass_at_n
    return {
        name: 100.0 * sum(rule(p) for p in problems) / len(problems) for name, rule in rules.items()
    }


def right_answer_wrong_process_rate(
    final_answer_correct: Sequence[bool], first_error_steps: Sequence[int]
) -> float:
    """Among traces with a correct final answer, the share whose steps contain an error."""
    pairs = [
        label != -1 for ok, label in zip(final_answer_correct, first_error_steps, strict=True) if ok
    ]
    return sum(pairs) / len(pairs) if pairs else math.nan
