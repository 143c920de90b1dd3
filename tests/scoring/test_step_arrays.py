"""The vectorised reduction equals the per-trace functions of ``scoring.metrics``, and a
per-step histogram written out here, on step scores with NaN and ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import metrics, step_arrays

# A coarse grid (ties between steps and traces are common), values outside [0, 1] for
# the histogram's end bins, NaN for steps without a score.
SCORES = st.one_of(
    st.integers(0, 20).map(lambda k: k / 20),
    st.sampled_from([-0.25, 1.0, 1.5, math.nan]),
    st.floats(0, 1, width=32),
)
TRACE = st.lists(SCORES, min_size=1, max_size=9).flatmap(
    # Labels past the last step too: every step correct, no first-error step.
    lambda row: st.tuples(st.just(row), st.integers(-1, len(row) + 1))
)


def _as_float32(values: list[float]) -> list[float]:
    return np.array(values, dtype=np.float32).tolist()


def _low(values: list[float]) -> float:
    return min((-math.inf if math.isnan(s) else s for s in values), default=math.inf)


def _reference(traces: list[tuple[list[float], int]], bins: int) -> step_arrays.Reduced:
    summaries, counts, fine = [], {}, [[0] * bins for _ in step_arrays.STEP_CLASSES]
    for row, label in traces:
        row = _as_float32(row)
        cut = len(row) if label == -1 else label
        if label < len(row):
            summaries.append(metrics.summarize(row, label))
        else:  # every step correct and none at the first error
            two = len(row) >= 2
            summaries.append(
                metrics.TraceSummary(
                    label,
                    _low(row),
                    math.inf,
                    math.inf,
                    row[-1] if two else math.nan,
                    _low(row[:-1]) if two else math.nan,
                )
            )
        for index, score in enumerate(row):
            if math.isnan(score):
                continue
            cls = 0 if index < cut else 1 if index == label else 2
            if cls < 2:
                counts.setdefault(score, [0, 0])[cls] += 1
            if bins:
                fine[cls][max(0, min(bins - 1, math.floor(score * bins)))] += 1
    u2, positives, negatives = metrics.mann_whitney_u2(
        (score, pos, neg) for score, (pos, neg) in counts.items()
    )
    return step_arrays.Reduced(summaries, u2, positives, negatives, fine)


def _reduce(traces: list[tuple[list[float], int]], bins: int) -> step_arrays.Reduced:
    return step_arrays.reduce_traces(
        np.array([label for _, label in traces]),
        np.array([len(row) for row, _ in traces]),
        np.array([s for row, _ in traces for s in row], dtype=np.float32),
        bins,
    )


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(TRACE, max_size=30), st.sampled_from([0, 5, 100]))
def test_it_equals_the_per_trace_functions(traces, bins):
    got, expected = _reduce(traces, bins), _reference(traces, bins)
    assert len(got.summaries) == len(expected.summaries)
    for mine, theirs in zip(got.summaries, expected.summaries, strict=True):
        assert all(_same(a, b) for a, b in zip(mine, theirs, strict=True)), (mine, theirs)
    assert (got.u2, got.positives, got.negatives) == (
        expected.u2,
        expected.positives,
        expected.negatives,
    )
    assert got.fine == (expected.fine if bins else [])


def test_the_auroc_of_separated_classes_is_one_and_of_reversed_zero():
    traces = [([0.9, 0.8, 0.1], 2), ([0.7, 0.2, 0.3], 1), ([0.95, 0.6], -1)]
    reduced = _reduce(traces, 0)
    assert metrics.auroc_from_u2(reduced.u2, reduced.positives, reduced.negatives) == 1.0
    flipped = [([1 - s for s in row], label) for row, label in traces]
    reduced = _reduce(flipped, 0)
    assert metrics.auroc_from_u2(reduced.u2, reduced.positives, reduced.negatives) == 0.0


def test_inconsistent_arrays_are_refused():
    with pytest.raises(ValueError, match="same traces"):
        step_arrays.reduce_traces(np.array([0]), np.array([3]), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="needs a step"):
        step_arrays.reduce_traces(np.array([0, -1]), np.array([0, 2]), np.zeros(2, np.float32))
