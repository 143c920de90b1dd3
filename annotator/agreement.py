"""Inter-annotator agreement on first-error labels, from plain Python data.

No Django here: callers pass ``{rater: {item: first_error_step}}`` (``-1`` = all
correct, its own category) and, for step ratings, ``{rater: {item: [rating or None]}}``.

- exact agreement: share of rater pairs on a shared item that give the same first error;
- Cohen's kappa per pair of raters over the items both labelled (scikit-learn);
- Krippendorff's alpha, nominal, over all raters (the ``krippendorff`` package);
- step agreement: over the steps both raters of a pair judged (rating not ``None``),
  the share with equal ratings.

Every statistic is ``None`` where it is undefined (no shared items, or a single
category everywhere, where kappa and alpha divide by zero).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

Labels = Mapping[str, Mapping[Hashable, int]]
Ratings = Mapping[str, Mapping[Hashable, Sequence[int | None]]]


@dataclass(frozen=True)
class PairAgreement:
    rater_a: str
    rater_b: str
    items: int
    agreed: int
    kappa: float | None
    steps: int
    steps_agreed: int

    @property
    def exact(self) -> float | None:
        return self.agreed / self.items if self.items else None

    @property
    def step_agreement(self) -> float | None:
        return self.steps_agreed / self.steps if self.steps else None


@dataclass(frozen=True)
class RaterAgreement:
    rater: str
    items: int  # items this rater shares with at least one other rater
    comparisons: int  # (item, other rater) pairs
    agreed: int

    @property
    def exact(self) -> float | None:
        return self.agreed / self.comparisons if self.comparisons else None


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: ``(p_o - p_e) / (1 - p_e)``
    with ``p_o`` the observed agreement and ``p_e`` the agreement expected from each
    rater's label frequencies (Cohen 1960, eq. 1), as scikit-learn's
    ``cohen_kappa_score`` computes it without weights. Written out because importing
    scikit-learn costs the Agreement page almost 3 s in a fresh process.

    >>> round(cohen_kappa([2, -1, 0, -1, 1], [2, -1, 1, -1, 1]), 4)
    0.7222
    """
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    if not a or len(set(a) | set(b)) < 2:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def krippendorff_alpha(labels: Labels) -> float | None:
    """Nominal Krippendorff's alpha over all raters; items with one label are unpairable.

    >>> round(krippendorff_alpha({"a": {1: 2, 2: -1, 3: 0}, "b": {1: 2, 2: -1, 3: 1}}), 4)
    0.6154
    """
    import krippendorff

    raters = sorted(labels)
    items = sorted({item for rated in labels.values() for item in rated}, key=repr)
    if len(raters) < 2 or not items:
        return None
    data = np.full((len(raters), len(items)), np.nan)
    column = {item: j for j, item in enumerate(items)}
    for i, rater in enumerate(raters):
        for item, value in labels[rater].items():
            data[i, column[item]] = value
    pairable = np.sum(~np.isnan(data), axis=0) >= 2
    if not pairable.any() or len(np.unique(data[:, pairable][~np.isnan(data[:, pairable])])) < 2:
        return None
    value = float(
        krippendorff.alpha(reliability_data=data[:, pairable], level_of_measurement="nominal")
    )
    return None if math.isnan(value) else value


def step_agreement(
    a: Sequence[Sequence[int | None]], b: Sequence[Sequence[int | None]]
) -> tuple[int, int]:
    """(agreed, judged by both) over the steps of paired items.

    >>> step_agreement([[1, 1, -1, None]], [[1, 0, 1, -1]])
    (1, 3)
    """
    agreed = judged = 0
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=False):
            if x is None or y is None:
                continue
            judged += 1
            agreed += x == y
    return agreed, judged


def pair_agreements(labels: Labels, ratings: Ratings | None = None) -> list[PairAgreement]:
    """One row per pair of raters who share at least one item."""
    ratings = ratings or {}
    out = []
    for a, b in combinations(sorted(labels), 2):
        shared = sorted(set(labels[a]) & set(labels[b]), key=repr)
        if not shared:
            continue
        la = [labels[a][item] for item in shared]
        lb = [labels[b][item] for item in shared]
        ra, rb = ratings.get(a, {}), ratings.get(b, {})
        rated = [item for item in shared if ra.get(item) and rb.get(item)]
        steps_agreed, steps = step_agreement(
            [ra[item] for item in rated], [rb[item] for item in rated]
        )
        out.append(
            PairAgreement(
                rater_a=a,
                rater_b=b,
                items=len(shared),
                agreed=sum(x == y for x, y in zip(la, lb, strict=True)),
                kappa=cohen_kappa(la, lb),
                steps=steps,
                steps_agreed=steps_agreed,
            )
        )
    return out


def rater_agreements(labels: Labels) -> list[RaterAgreement]:
    """Each rater's exact agreement with everyone else on the items they share."""
    out = []
    for rater in sorted(labels):
        items = comparisons = agreed = 0
        for item, value in labels[rater].items():
            others = [
                labels[other][item] for other in labels if other != rater and item in labels[other]
            ]
            if not others:
                continue
            items += 1
            comparisons += len(others)
            agreed += sum(value == other for other in others)
        out.append(RaterAgreement(rater, items, comparisons, agreed))
    return out


@dataclass(frozen=True)
class Summary:
    items: int  # items with two or more raters
    pairs: int  # (item, rater pair) comparisons
    agreed: int
    alpha: float | None
    steps: int
    steps_agreed: int

    @property
    def exact(self) -> float | None:
        return self.agreed / self.pairs if self.pairs else None

    @property
    def step_agreement(self) -> float | None:
        return self.steps_agreed / self.steps if self.steps else None


def summarise(labels: Labels, pairs: Sequence[PairAgreement]) -> Summary:
    items = {item for rated in labels.values() for item in rated}
    shared = sum(1 for item in items if sum(item in rated for rated in labels.values()) >= 2)
    return Summary(
        items=shared,
        pairs=sum(p.items for p in pairs),
        agreed=sum(p.agreed for p in pairs),
        alpha=krippendorff_alpha(labels),
        steps=sum(p.steps for p in pairs),
        steps_agreed=sum(p.steps_agreed for p in pairs),
    )
