"""Many labelled traces' step scores reduced at once, with numpy, to what the threshold
metrics of :mod:`scoring.metrics` read: a :class:`~scoring.metrics.TraceSummary` per
trace, the Mann-Whitney sum 2U of the judged steps, and the steps per class and score
bin. The same numbers as :func:`metrics.summarize`, :func:`metrics.mann_whitney_u2`
over :func:`metrics.step_label_counts` and a per-step histogram, from flat arrays: a
dashboard hands over tens of thousands of traces' scores at once, and a loop over
their steps in Python (or in SQL, one aggregate per trace) costs ten times as much.

The scores are 4-byte floats, compared as such (as a database compares ``real``
values), and a NaN score counts as ``metrics`` counts it: -inf in a minimum, +inf at
the first error, left out of AUROC and the histogram. A label at or past a trace's
last step leaves every step correct and nothing at the first error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.metrics import TraceSummary

STEP_CLASSES = ("correct", "first error", "after first error")


@dataclass
class Reduced:
    """One group of traces (a run's split, say) reduced: per-trace summaries in the
    order given, 2U with the judged steps' class sizes, and ``fine[class][bin]``, the
    steps per class of :data:`STEP_CLASSES` and per score bin over [0, 1] (scores
    outside it in the end bins), empty unless bins were asked for."""

    summaries: list[TraceSummary]
    u2: int
    positives: int
    negatives: int
    fine: list[list[int]]


def reduce_traces(
    labels: np.ndarray, lengths: np.ndarray, scores: np.ndarray, bins: int = 0
) -> Reduced:
    """Reduce traces given as their first errors (``labels``, -1: all correct), their
    step counts (``lengths``, each > 0) and every step score in trace order
    (``scores``, ``float32``, ``lengths.sum()`` of them). ``bins``: how many score bins
    to count steps in (0: none)."""
    labels = np.asarray(labels, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if len(labels) != len(lengths) or int(lengths.sum()) != len(scores):
        raise ValueError("labels, lengths and scores do not describe the same traces")
    if len(labels) == 0:
        return Reduced([], 0, 0, 0, [[0] * bins for _ in STEP_CLASSES] if bins else [])
    if lengths.min() < 1:
        raise ValueError("every trace needs a step")
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    label_of = np.repeat(labels, lengths)
    index = np.arange(len(scores)) - np.repeat(starts, lengths)
    missing = np.isnan(scores)
    low = np.where(missing, np.float32(-np.inf), scores)
    inf = np.float32(np.inf)

    def lowest(mask: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(np.where(mask, low, inf), starts)

    positive = (label_of == -1) | (index < label_of)
    at_error = index == label_of
    labelled = (labels >= 0) & (labels < lengths)
    at_index = starts + np.where(labelled, labels, 0)
    at = np.where(labelled & ~missing[at_index], scores[at_index], inf)
    two = lengths >= 2
    nan = np.float32(np.nan)
    columns = (
        labels,
        lowest(positive),
        at,
        np.where(labels == -1, inf, lowest(index > label_of)),
        np.where(two, scores[starts + lengths - 1], nan),
        np.where(two, lowest(index < np.repeat(lengths, lengths) - 1), nan),
    )
    as_lists = [column.tolist() for column in columns]  # 4-byte floats as Python floats
    summaries = list(map(TraceSummary._make, zip(*as_lists, strict=True)))

    negatives = np.sort(scores[at_error & ~missing])
    judged = scores[positive & ~missing]
    u2 = int(
        np.searchsorted(negatives, judged, side="left").sum()
        + np.searchsorted(negatives, judged, side="right").sum()
    )
    fine: list[list[int]] = []
    if bins:
        cls = np.where(positive, 0, np.where(at_error, 1, 2))[~missing]
        # ``width_bucket(score, 0, 1, bins)`` clamped to the end bins, 0-based.
        where = np.clip(np.floor(scores[~missing].astype(np.float64) * bins), 0, bins - 1)
        counts = np.bincount(cls * bins + where.astype(np.int64), minlength=3 * bins)
        fine = counts.reshape(3, bins).tolist()
    return Reduced(summaries, u2, len(judged), len(negatives), fine)
