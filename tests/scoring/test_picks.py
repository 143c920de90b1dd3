"""Counted picks equal ``metrics.problem_picks`` problem by problem, ties, near ties,
missing answers and non-finite aggregates included; what they cannot decide they hand
back."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import metrics, picks

AGGREGATE = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),  # exact ties
    st.floats(0, 1),
    st.sampled_from([0.5 + 1e-12, 0.5 - 1e-9, math.nan, math.inf, -math.inf]),  # near ties
)
SOLUTION = st.tuples(
    st.one_of(st.none(), st.sampled_from(["12", "13", "x"])),
    st.booleans(),
    st.tuples(*[AGGREGATE] * len(metrics.AGGREGATIONS)),
    st.sampled_from([None, -1, 0, 3]),
)
PROBLEMS = st.lists(st.lists(SOLUTION, min_size=1, max_size=6), max_size=25)


def _as_solutions(problem: list[tuple]) -> list[metrics.Solution]:
    return [
        metrics.Solution(
            answer=answer,
            correct=correct,
            scores=dict(zip(metrics.AGGREGATIONS, values, strict=True)),
            first_error_step=label,
        )
        for answer, correct, values, label in problem
    ]


def _count(problems: list[list[tuple]]) -> picks.CountedPicks:
    answers: dict[str, int] = {}
    rows = [(k, *solution) for k, problem in enumerate(problems) for solution in problem]
    return picks.count_picks(
        np.array([k for k, *_ in rows], dtype=np.int64),
        np.array([-1 if a is None else answers.setdefault(a, len(answers)) for _, a, *_ in rows]),
        np.array([c for _, _, c, _, _ in rows], dtype=bool),
        np.array([v for *_, v, _ in rows], dtype=np.float64).reshape(-1, len(metrics.AGGREGATIONS)),
        np.array(
            [
                picks.NOT_LABELLED
                if label is None
                else picks.RIGHT_STEPS
                if label == -1
                else picks.WRONG_STEP
                for *_, label in rows
            ]
        ),
    )


@settings(max_examples=400, deadline=None)
@given(PROBLEMS)
def test_decided_problems_are_counted_as_problem_picks_counts_them(problems):
    counted = _count(problems)
    expected = Counter(
        metrics.problem_picks(_as_solutions(problem))
        for k, problem in enumerate(problems)
        if len(problem) >= 2 and k not in counted.undecided
    )
    assert counted.picks == expected
    several = {k for k, problem in enumerate(problems) if len(problem) >= 2}
    assert set(counted.undecided) <= several
    assert sum(counted.picks.values()) + len(counted.undecided) == len(several)


def test_what_floats_could_decide_otherwise_is_handed_back():
    one = ("12", True, (0.5, 0.5, 0.5, 0.5), None)
    near = ("13", False, (0.5 + 1e-9, 0.5, 0.5, 0.5), None)
    infinite = ("13", False, (0.5, math.inf, 0.5, 0.5), None)
    tied_votes = ("13", False, (0.5, 0.5, 0.5, 0.5), None)
    clear = [("12", True, (0.9, 0.9, 0.9, 0.9), -1), ("13", False, (0.1, 0.1, 0.1, 0.1), 2)]
    counted = _count([[one, near], [one, infinite], [one, tied_votes], clear, [one]])
    assert counted.undecided == [0, 1, 2]
    [(got, count)] = counted.picks.items()
    assert count == 1
    assert got == metrics.problem_picks(_as_solutions(clear))
    assert got.best_wrong_step == (False,) * len(metrics.AGGREGATIONS)


def test_unsorted_problems_are_refused():
    with pytest.raises(ValueError, match="sorted by problem"):
        picks.count_picks(
            np.array([2, 1]),
            np.array([0, 0]),
            np.array([True, False]),
            np.zeros((2, 4)),
            np.zeros(2),
        )
