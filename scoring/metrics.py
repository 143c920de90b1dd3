"""The metrics the PRM literature reports, on plain lists (no numpy needed).

Conventions: step indices are 0-based; a first-error label of -1 means "all steps
correct"; percentages are in 0..100 as in the ProcessBench paper.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from scoring.labels import ratings_from_first_error
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


# -- per-trace summaries: the figures from one row per trace --------------------------------
#
# Every threshold figure above depends on a trace's step scores only through a few
# minima, so many traces' steps can be reduced to one ``TraceSummary`` each at once
# (``scoring.step_arrays``) and the dashboards compute the same numbers as ``evaluate``
# from those rows.
# A NaN score (no verdict) stops ``first_error`` with NO_PREDICTION, which is never right:
# in a summary it counts as -inf in a minimum (some step "fires" there, wrongly) and as
# +inf at the labelled step (it never fires as the right one).


class TraceSummary(NamedTuple):
    """A labelled trace's step scores reduced to what threshold metrics need.

    ``before``: the lowest score before the first error (all steps when ``label`` is -1);
    ``at``: the score at the first error (+inf for -1); ``after``: the lowest score after
    it (+inf if none); ``last`` and ``before_last``: the final step's score and the lowest
    one before it (for traces of 2+ steps, else NaN). A named tuple, not a dataclass: a
    dashboard builds tens of thousands from database rows, five times faster so."""

    label: int
    before: float
    at: float
    after: float
    last: float
    before_last: float


def _low(values: Iterable[float]) -> float:
    return min((-math.inf if math.isnan(v) else v for v in values), default=math.inf)


def summarize(scores: Sequence[float], label: int) -> TraceSummary:
    """The summary of one trace's step scores against its human first error.

    >>> summarize([0.9, 0.8, 0.2, 0.7], 2)
    TraceSummary(label=2, before=0.8, at=0.2, after=0.7, last=0.7, before_last=0.2)
    """
    cut = len(scores) if label == -1 else label
    at = math.inf if label == -1 or math.isnan(scores[label]) else scores[label]
    two = len(scores) >= 2
    return TraceSummary(
        label=label,
        before=_low(scores[:cut]),
        at=at,
        after=_low(scores[cut + 1 :]) if label != -1 else math.inf,
        last=scores[-1] if two else math.nan,
        before_last=_low(scores[:-1]) if two else math.nan,
    )


def summary_correct(summary: TraceSummary, tau: float) -> bool:
    """Whether ``first_error(scores, tau)`` equals the label (ProcessBench's hit)."""
    if summary.label == -1:
        return summary.before >= tau
    return summary.before >= tau and summary.at < tau


def processbench_from_summaries(
    summaries: Sequence[TraceSummary], tau: float
) -> ProcessBenchResult:
    """:func:`processbench` of ``first_error(scores, tau)`` against the labels."""
    hits = [summary_correct(s, tau) for s in summaries]
    preds = [s.label if hit else NO_PREDICTION for s, hit in zip(summaries, hits, strict=True)]
    return processbench(preds, [s.label for s in summaries])


def table_from_summaries(
    by_split: Mapping[str, Sequence[TraceSummary]], tau: float
) -> dict[str, ProcessBenchResult]:
    """:func:`processbench_table` at one threshold, splits in name order plus "average"."""
    table = {split: processbench_from_summaries(by_split[split], tau) for split in sorted(by_split)}
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


def sweep_from_summaries(
    summaries: Sequence[TraceSummary], taus: Iterable[float] = DEFAULT_TAUS
) -> list[tuple[float, ProcessBenchResult]]:
    """:func:`tau_sweep` in O((n + taus) log n): a trace is right for tau in the interval
    ``(at, before]`` (``(-inf, before]`` when all its steps are correct), so the hits at
    tau are ``#{low < tau} - #{high < tau}`` over the non-empty intervals of each class."""
    from bisect import bisect_left

    def edges(rows: list[TraceSummary]) -> tuple[list[float], list[float]]:
        intervals = [(-math.inf if s.label == -1 else s.at, s.before) for s in rows]
        kept = [(low, high) for low, high in intervals if low < high]
        return sorted(low for low, _ in kept), sorted(high for _, high in kept)

    err = [s for s in summaries if s.label != -1]
    cor = [s for s in summaries if s.label == -1]
    err_edges, cor_edges = edges(err), edges(cor)
    result = []
    for tau in taus:
        hit_err = bisect_left(err_edges[0], tau) - bisect_left(err_edges[1], tau)
        hit_cor = bisect_left(cor_edges[0], tau) - bisect_left(cor_edges[1], tau)
        acc_err = 100.0 * hit_err / len(err) if err else math.nan
        acc_cor = 100.0 * hit_cor / len(cor) if cor else math.nan
        total = acc_err + acc_cor
        f1 = 2 * acc_err * acc_cor / total if total else math.nan
        result.append((tau, ProcessBenchResult(acc_err, acc_cor, f1, len(err), len(cor))))
    return result


def best_from_sweep(
    sweep: Sequence[tuple[float, ProcessBenchResult]],
) -> tuple[float, ProcessBenchResult]:
    """The point of a sweep with the highest F1, as :func:`best_tau` picks it."""

    def rank(pair: tuple[float, ProcessBenchResult]) -> tuple[float, float]:
        f1 = pair[1].f1
        return (-math.inf if math.isnan(f1) else f1, -pair[0])

    return max(sweep, key=rank)


FIRST_ERROR_OUTCOMES = ("earlier", "exact", "later", "missed", "false alarm", "all correct")


def first_error_outcome(summary: TraceSummary, tau: float) -> str:
    """Where the predicted first error at ``tau`` falls against the human one: "earlier",
    "exact", "later", "missed" (nothing fires on an erroneous trace), "false alarm"
    (something fires on an all-correct one) or "all correct" (rightly nothing)."""
    if summary.label == -1:
        return "false alarm" if summary.before < tau else "all correct"
    if summary.before < tau:
        return "earlier"
    if summary.at < tau:
        return "exact"
    return "later" if summary.after < tau else "missed"


def first_error_confusion(summaries: Iterable[TraceSummary], tau: float) -> dict[str, int]:
    """Counts of :func:`first_error_outcome` over traces, every outcome present."""
    counts = Counter(first_error_outcome(s, tau) for s in summaries)
    return {outcome: counts.get(outcome, 0) for outcome in FIRST_ERROR_OUTCOMES}


def min_on_final_from_summaries(summaries: Iterable[TraceSummary]) -> float:
    """:func:`min_on_final_share` from summaries: the last score is the strict minimum."""
    eligible = [s for s in summaries if not math.isnan(s.last)]
    if not eligible:
        return math.nan
    return sum(s.last < s.before_last for s in eligible) / len(eligible)


def mann_whitney_u2(counts: Iterable[tuple[float, int, int]]) -> tuple[int, int, int]:
    """(2U, positives, negatives) from ``(score, positives, negatives)`` per distinct
    score (what a ``GROUP BY score`` returns): U counts the (positive, negative) pairs
    where the positive scores higher, ties one half, so 2U is a whole number that a
    database can sum exactly: ``sum(pos * (2 * negatives below + neg))``."""
    rows = sorted((s, p, n) for s, p, n in counts if not math.isnan(s))
    below = 0  # negatives with a lower score
    u2 = 0
    for _, pos, neg in rows:
        u2 += pos * (2 * below + neg)
        below += neg
    return u2, sum(p for _, p, _ in rows), below


def auroc_from_u2(u2: int, n_pos: int, n_neg: int) -> float:
    """AUROC = U / (positives x negatives); NaN when a class is empty."""
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return u2 / (2 * n_pos * n_neg)


def auroc_from_counts(counts: Iterable[tuple[float, int, int]]) -> float:
    """:func:`auroc` from ``(score, positives, negatives)`` per distinct score."""
    return auroc_from_u2(*mann_whitney_u2(counts))


def step_label_counts(
    scores: Sequence[Sequence[float]], labels: Sequence[int]
) -> list[tuple[float, int, int]]:
    """``(score, correct steps, first-error steps)`` per distinct score, over the steps a
    first-error label judges (see :func:`scoring.labels.ratings_from_first_error`)."""
    counts: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    for trace_scores, label in zip(scores, labels, strict=True):
        for judged, score in zip(
            ratings_from_first_error(label, len(trace_scores), correct=True, wrong=False),
            trace_scores,
            strict=True,
        ):
            if judged is not None and not math.isnan(score):
                counts[score][0 if judged else 1] += 1
    return [(score, pos, neg) for score, (pos, neg) in counts.items()]


def roc_points(
    counts: Iterable[tuple[float, int, int]], max_points: int = 200
) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) of "correct if score >= t" from high t
    to low, thinned to about ``max_points`` for a chart; starts at (0, 0), ends at (1, 1)."""
    rows = sorted(((s, p, n) for s, p, n in counts if not math.isnan(s)), reverse=True)
    n_pos = sum(p for _, p, _ in rows) or 1
    n_neg = sum(n for _, _, n in rows) or 1
    step = max(1, len(rows) // max_points)
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    for i, (_, pos, neg) in enumerate(rows):
        tp += pos
        fp += neg
        if i % step == step - 1 or i == len(rows) - 1:
            fpr.append(fp / n_neg)
            tpr.append(tp / n_pos)
    return fpr, tpr


# -- best-of-N from per-solution aggregates -------------------------------------------------

# Scores are stored as 4-byte floats (about 7 significant digits), and a database sums
# and multiplies in another order than Python does: aggregates are compared at 9
# significant digits so that ties break the same way whichever computed them.
AGGREGATE_DIGITS = 9


def comparable(value: float) -> float:
    """``value`` rounded to :data:`AGGREGATE_DIGITS` significant digits (NaN as -inf)."""
    if math.isnan(value):
        return -math.inf
    if value == 0 or math.isinf(value):
        return value
    return round(value, AGGREGATE_DIGITS - 1 - math.floor(math.log10(abs(value))))


@dataclass(frozen=True)
class Solution:
    """One of N solutions with its aggregated scores (``{"min": ..., "product": ...}``)
    and, where humans labelled it, its first error."""

    answer: Hashable
    correct: bool
    scores: Mapping[str, float]
    first_error_step: int | None = None


def solution_aggregates(step_scores: Sequence[float]) -> dict[str, float]:
    """Every aggregation of :data:`AGGREGATIONS` over one solution's step scores, NaN
    steps (no verdict) left out, as the dashboard's SQL leaves them out."""
    finite = [s for s in step_scores if not math.isnan(s)]
    return {how: aggregate(finite, how) for how in AGGREGATIONS}


# Two aggregates further apart than this share of their magnitudes never compare equal
# (nor swap) after :func:`comparable`, whose rounding moves a value by at most 5e-9 of
# it: a vectorised pick (``scoring.picks``) may take the higher of two such values
# itself and leave only closer ones, and exact ties (first wins), to :func:`pick`.
DISTINCT_BEYOND = 1e-7


def distinct(a: float, b: float) -> bool:
    """Whether finite ``a`` and ``b`` are far enough apart that :func:`comparable` keeps
    their order (what the dashboard's SQL checks before it picks a solution itself).

    >>> distinct(0.5, 0.5 + 1e-6), distinct(0.5, 0.5 + 1e-9)
    (True, False)
    """
    return abs(a - b) > DISTINCT_BEYOND * (abs(a) + abs(b))


def pick(scores: Sequence[float]) -> int:
    """Index of the highest score at :data:`AGGREGATE_DIGITS` digits, the first on ties:
    the one selection rule of best-of-N and of the weighted vote.

    >>> pick([0.3, 0.7, 0.7000000001, math.nan])
    1
    """
    return max(range(len(scores)), key=lambda i: (comparable(scores[i]), -i))


@dataclass(frozen=True)
class Picks:
    """What each selection rule picks for one problem, per aggregation in
    :data:`AGGREGATIONS` order: whether best-of-N's solution is right, whether humans
    found an error in its steps (None: unlabelled), whether the weighted vote's answer is
    right; and whether the majority answer is right, whether any solution is. Problems
    with equal picks count together, so ``scoring.picks`` can hand over counts of them."""

    best_correct: tuple[bool, ...]
    best_wrong_step: tuple[bool | None, ...]
    vote_correct: tuple[bool, ...]
    majority_correct: bool
    any_correct: bool


def _answer_right(solutions: Sequence[Solution], answer: Hashable) -> bool:
    return any(s.correct for s in solutions if s.answer == answer)


def problem_picks(solutions: Sequence[Solution]) -> Picks:
    """:class:`Picks` of one problem's solutions (in a fixed order: first wins ties).
    The weighted vote sums each answer's non-NaN aggregates; a problem without an answer
    (or a scored one) has no vote, which counts as wrong."""
    best = [solutions[pick([s.scores[how] for s in solutions])] for how in AGGREGATIONS]
    votes = []
    for how in AGGREGATIONS:
        totals: dict[Hashable, float] = defaultdict(float)
        for s in solutions:
            if s.answer is not None and not math.isnan(s.scores[how]):
                totals[s.answer] += s.scores[how]
        answers = list(totals)
        votes.append(
            bool(answers) and _answer_right(solutions, answers[pick([totals[a] for a in answers])])
        )
    counts = Counter(s.answer for s in solutions if s.answer is not None)
    return Picks(
        best_correct=tuple(s.correct for s in best),
        best_wrong_step=tuple(
            None if s.first_error_step is None else s.first_error_step != -1 for s in best
        ),
        vote_correct=tuple(votes),
        majority_correct=bool(counts) and _answer_right(solutions, counts.most_common(1)[0][0]),
        any_correct=any(s.correct for s in solutions),
    )


def best_of_n_from_picks(picks: Mapping[Picks, int]) -> dict[str, float]:
    """Accuracy (percent) of each selection rule over problems counted by their
    :class:`Picks`, as :func:`best_of_n_table`: ``bon_<agg>``, ``weighted_vote_<agg>``,
    ``maj``, ``pass``; plus ``wrong_process_<agg>``: among the problems where
    ``bon_<agg>`` picked a right answer from a solution humans labelled, the share whose
    steps hold an error (NaN when there is none)."""
    n = sum(picks.values())
    if not n:
        return {}
    table: dict[str, float] = {}
    for k, how in enumerate(AGGREGATIONS):
        right = labelled = wrong = vote = 0
        for p, count in picks.items():
            vote += count if p.vote_correct[k] else 0
            if p.best_correct[k]:
                right += count
                if p.best_wrong_step[k] is not None:
                    labelled += count
                    wrong += count if p.best_wrong_step[k] else 0
        table[f"bon_{how}"] = 100.0 * right / n
        table[f"weighted_vote_{how}"] = 100.0 * vote / n
        table[f"wrong_process_{how}"] = 100.0 * wrong / labelled if labelled else math.nan
    table["maj"] = 100.0 * sum(c for p, c in picks.items() if p.majority_correct) / n
    table["pass"] = 100.0 * sum(c for p, c in picks.items() if p.any_correct) / n
    return table


def best_of_n_from_aggregates(problems: Sequence[Sequence[Solution]]) -> dict[str, float]:
    """:func:`best_of_n_from_picks` of each problem's :func:`problem_picks`."""
    return best_of_n_from_picks(Counter(problem_picks(p) for p in problems))


@dataclass(frozen=True)
class SelfVerification:
    """A solution-level verifier's verdicts against the graded final answers, as LaSeR
    reports its self-rewarding scores (``RUCBM/LaSeR`` ``src/calculate_self_rewarding_scores.py``
    lines 304-373): ``acc_correct``, the share of right solutions judged correct
    (``score > threshold``); ``acc_wrong``, the share of wrong ones judged incorrect; their
    harmonic mean ``f1`` (line 357, 0 where both are 0, as ProcessBench's F1 over its two
    accuracies); ``accuracy`` over all solutions. Shares in 0..100 as ProcessBench's."""

    n_correct: int
    n_wrong: int
    acc_correct: float
    acc_wrong: float
    accuracy: float
    f1: float


def self_verification(
    scores: Sequence[float], correct: Sequence[bool], threshold: float = 0.5
) -> SelfVerification:
    """Judged correct when ``score > threshold`` (lines 331, 335 and 338: a score of exactly
    0.5 is "incorrect"); an empty class has accuracy 0 (lines 354-355). LaSeR prints these
    twice: over the solutions with an extracted answer ("filtered", lines 341-351) and over
    all of them with r_s = 0 for the rest ("all", lines 328-338, 146-153); the caller picks
    the solutions and the scores.

    >>> self_verification([0.9, 0.2, 0.5, 0.7], [True, False, True, False]).f1
    50.0
    """
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores for {len(correct)} solutions")
    judged = [score > threshold for score in scores]
    right = [j for j, c in zip(judged, correct, strict=True) if c]
    wrong = [not j for j, c in zip(judged, correct, strict=True) if not c]
    acc_correct = sum(right) / len(right) if right else 0.0
    acc_wrong = sum(wrong) / len(wrong) if wrong else 0.0
    accuracy = sum(right + wrong) / len(judged) if judged else 0.0
    total = acc_correct + acc_wrong
    f1 = 2 * acc_correct * acc_wrong / total if total > 0 else 0.0
    return SelfVerification(
        len(right), len(wrong), 100 * acc_correct, 100 * acc_wrong, 100 * accuracy, 100 * f1
    )
