"""Best-of-N picks of many problems at once, with numpy: what
:func:`scoring.metrics.problem_picks` finds for each problem, counted, for the problems
where floating-point order cannot change the answer. A dashboard picks among 100k
solutions of 25k problems per run on every new filter, and a loop over problems in
Python (or windows and groups in SQL) costs several times as much.

``metrics.pick`` compares aggregates at :data:`metrics.AGGREGATE_DIGITS` significant
digits and lets the first solution win ties, and a vote sums aggregates in an order of
its own. So a problem is decided here only when every aggregate is finite, the highest
one is either unique or an exact tie among values :func:`metrics.distinct` from the
rest, and one answer's vote total is distinct from every other's; the others come back
as *undecided*, for ``metrics.problem_picks`` to settle one by one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from scoring.metrics import AGGREGATIONS, DISTINCT_BEYOND, Picks

# What humans said of a picked solution's steps, as ``labelled`` codes it.
NOT_LABELLED, RIGHT_STEPS, WRONG_STEP = 0, 1, 2
_WRONG_STEP = (None, False, True)


@dataclass
class CountedPicks:
    """Decided problems counted by their :class:`~scoring.metrics.Picks`, and the
    problem ids left undecided (see the module's docstring)."""

    picks: Counter[Picks]
    undecided: list[int]


def _close(a: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Not :func:`metrics.distinct`, elementwise (finite values)."""
    return np.abs(top - a) <= DISTINCT_BEYOND * (np.abs(top) + np.abs(a))


def _firsts(problem: np.ndarray) -> np.ndarray:
    """Whether each row (sorted by problem) is its problem's first."""
    return np.concatenate(([True], problem[1:] != problem[:-1]))[: len(problem)]


def count_picks(
    problem: np.ndarray,
    answer: np.ndarray,
    correct: np.ndarray,
    scores: np.ndarray,
    labelled: np.ndarray,
) -> CountedPicks:
    """Count the picks of every problem with two or more solutions. One row per
    solution, sorted by problem and, within a problem, in the order whose first wins a
    tie: ``problem`` ids, ``answer`` ids (-1: no answer; equal ids, equal answers),
    ``correct`` (the final answer is right), ``scores`` (one column per aggregation of
    :data:`metrics.AGGREGATIONS`, in its order), ``labelled`` (:data:`NOT_LABELLED`,
    :data:`RIGHT_STEPS` or :data:`WRONG_STEP`)."""
    problem = np.asarray(problem, dtype=np.int64)
    n = len(problem)
    if n and np.any(problem[1:] < problem[:-1]):
        raise ValueError("the solutions must be sorted by problem")
    sizes = np.diff(np.append(np.flatnonzero(_firsts(problem)), n))
    keep = np.repeat(sizes >= 2, sizes)
    problem, answer = problem[keep], np.asarray(answer, dtype=np.int64)[keep]
    correct = np.asarray(correct, dtype=bool)[keep]
    scores = np.asarray(scores, dtype=np.float64)[keep]
    labelled = np.asarray(labelled, dtype=np.int64)[keep]
    n = len(problem)
    if not n:
        return CountedPicks(Counter(), [])
    firsts = _firsts(problem)
    starts = np.flatnonzero(firsts)
    group = np.cumsum(firsts) - 1
    n_problems = len(starts)
    rows = np.arange(n)

    finite = np.isfinite(scores).all(axis=1)
    undecided = ~np.logical_and.reduceat(finite, starts)
    safe = np.where(finite[:, None], scores, 0.0)  # undecided problems' values unused

    # Answer groups: rows sorted by problem, answer, then their own order.
    by_answer = np.lexsort((rows, answer, group))
    by_answer = by_answer[answer[by_answer] >= 0]
    a_group, a_answer = group[by_answer], answer[by_answer]
    a_starts = np.flatnonzero(
        np.concatenate(([True], (a_group[1:] != a_group[:-1]) | (a_answer[1:] != a_answer[:-1])))
    )[: len(by_answer)]
    a_problem, a_first = a_group[a_starts], by_answer[a_starts]
    a_count = np.diff(np.append(a_starts, len(by_answer)))
    right_by_first = np.zeros(n + 1, bool)  # each answer group's rightness, by first row
    if len(a_starts):
        right_by_first[a_first] = np.logical_or.reduceat(correct[by_answer], a_starts)

    def winner(values: np.ndarray) -> np.ndarray:
        """Per problem, whether the answer group with the highest ``values`` (ties to
        the first) is right; False for a problem without answers."""
        top = np.full(n_problems, -np.inf)
        np.maximum.at(top, a_problem, values)
        best = np.full(n_problems, n)  # row n: no answer group, never right
        is_top = values == top[a_problem]
        np.minimum.at(best, a_problem[is_top], a_first[is_top])
        return right_by_first[best]

    best_correct, best_label, vote_correct = [], [], []
    for k in range(len(AGGREGATIONS)):
        values = safe[:, k]
        top = np.maximum.reduceat(values, starts)
        equal = values == top[group]
        undecided |= np.logical_or.reduceat(~equal & _close(values, top[group]), starts)
        chosen = np.minimum.reduceat(np.where(equal, rows, n), starts)
        best_correct.append(correct[chosen])
        best_label.append(labelled[chosen])
        totals = np.add.reduceat(values[by_answer], a_starts) if len(a_starts) else a_count * 0.0
        most = np.full(n_problems, -np.inf)
        np.maximum.at(most, a_problem, totals)
        near = np.zeros(n_problems, np.int64)
        np.add.at(near, a_problem, _close(totals, most[a_problem]))
        undecided |= near > 1
        vote_correct.append(winner(totals))
    majority = winner(a_count.astype(np.float64))
    any_correct = np.logical_or.reduceat(correct, starts)

    # Each decided problem's picks as one number (a digit per rule: base 3 for what
    # humans said, base 2 for the rest), so that counting them is one integer sort.
    columns = [*best_correct, *best_label, *vote_correct, majority, any_correct]
    width = len(AGGREGATIONS)
    bases = [2] * width + [3] * width + [2] * (width + 2)
    keys = np.zeros(n_problems, np.int64)
    for column, base in zip(columns, bases, strict=True):
        keys = keys * base + column.astype(np.int64)
    unique, counts = np.unique(keys[~undecided], return_counts=True)
    found: Counter[Picks] = Counter()
    for key, count in zip(unique.tolist(), counts.tolist(), strict=True):
        code = []
        for base in reversed(bases):
            key, digit = divmod(key, base)
            code.append(digit)
        code.reverse()
        found[
            Picks(
                best_correct=tuple(bool(c) for c in code[0:width]),
                best_wrong_step=tuple(_WRONG_STEP[c] for c in code[width : 2 * width]),
                vote_correct=tuple(bool(c) for c in code[2 * width : 3 * width]),
                majority_correct=bool(code[3 * width]),
                any_correct=bool(code[3 * width + 1]),
            )
        ] += count
    return CountedPicks(found, problem[starts][undecided].tolist())
