"""A step label as PRM800K's labelling tool stores it, normalised from what was entered.

A label is a first error (0-based step index, ``-1`` for "all steps correct") and
optionally a rating per step (-1, 0, +1). The rules follow PRM800K's labelling tool:

- marking step k as the first error makes it -1, counts earlier unrated steps as
  correct (+1) and leaves later steps "not judged" (``None``);
- "all correct" rates every unrated step +1;
- with ratings alone, the first step rated -1 is the first error, and a trace whose
  every step is rated without a -1 is all correct.

Under the per-step scheme (:data:`PER_STEP`) nothing is filled in silently: every
step up to the first error must carry an explicit rating (the workspace's ``e`` and
``c`` keys fill them in visibly). Under the first-error scheme (:data:`FIRST_ERROR`)
the earlier steps are filled with +1.

Pure: the annotation workspace and the format readers (a file's step ratings must
agree with its first error) share these rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

FIRST_ERROR = "first_error"
PER_STEP = "per_step"
FLAGS = ("bad_problem", "gave_up", "bad_step_split")
RATINGS = (-1, 0, 1)
T = TypeVar("T")


class LabelError(ValueError):
    """The label cannot be stored; the message is shown to the annotator."""


@dataclass(frozen=True)
class Label:
    first_error_step: int | None
    step_ratings: list[int | None] | None
    flag: str = ""
    reason: str = ""


def normalise_label(
    num_steps: int,
    scheme: str,
    first_error_step: int | None,
    ratings: list[int | None],
    flag: str = "",
    reason: str = "",
) -> Label:
    """The label to store, or ``LabelError``.

    >>> normalise_label(4, "first_error", 2, [None] * 4)
    Label(first_error_step=2, step_ratings=[1, 1, -1, None], flag='', reason='')
    """
    if len(ratings) != num_steps:
        raise LabelError(f"expected {num_steps} step ratings, got {len(ratings)}")
    if any(r not in RATINGS for r in ratings if r is not None):
        raise LabelError("step ratings must be -1, 0 or +1")
    reason = reason.strip()
    if flag:
        if flag not in FLAGS:
            raise LabelError(f"unknown flag {flag!r}")
        if not reason:
            raise LabelError("give a reason for the flag")
        rated = list(ratings) if any(r is not None for r in ratings) else None
        return Label(None, rated, flag, reason)
    if first_error_step is not None and not -1 <= first_error_step < num_steps:
        raise LabelError(f"no step {first_error_step} in a trace of {num_steps} steps")
    first_minus = next((i for i, r in enumerate(ratings) if r == -1), None)
    if first_error_step is None:
        if first_minus is not None:
            first_error_step = first_minus
        elif all(r is not None for r in ratings):
            first_error_step = -1
        else:
            raise LabelError(
                "mark the first wrong step (e) or all steps correct (c), or rate every step"
            )
    elif first_error_step == -1 and first_minus is not None:
        raise LabelError(f"step {first_minus} is rated -1 but the trace is marked all correct")
    elif first_error_step >= 0 and first_minus is not None and first_minus < first_error_step:
        raise LabelError(
            f"step {first_minus} is rated -1, before the first error at step {first_error_step}"
        )
    judged = num_steps if first_error_step == -1 else first_error_step
    missing = [i for i in range(judged) if ratings[i] is None]
    if missing and scheme == PER_STEP:
        listed = ", ".join(str(i) for i in missing[:5])
        raise LabelError(f"rate every step before the first error (unrated: {listed})")
    out: list[int | None] = [1 if r is None else r for r in ratings[:judged]]
    if first_error_step >= 0:
        out.append(-1)
        out.extend([None] * (num_steps - first_error_step - 1))
    return Label(first_error_step, out)


def ratings_from_first_error(
    first_error_step: int, n_steps: int, *, correct: T = 1, wrong: T = -1
) -> list[T | None]:
    """The per-step labels a first error implies: the steps before it ``correct``, it
    ``wrong``, the later ones not judged (``None``); ``-1``: every step ``correct``.
    The one encoding of a first error as step labels: label sets and ratings use the
    defaults (PRM800K's +1/-1), metrics ``True``/``False``, training targets ``1``/``0``.

    >>> ratings_from_first_error(1, 3), ratings_from_first_error(-1, 2)
    ([1, -1, None], [1, 1])
    >>> ratings_from_first_error(0, 2, correct=True, wrong=False)
    [False, None]
    """
    if first_error_step == -1:
        return [correct] * n_steps
    return [correct] * first_error_step + [wrong] + [None] * (n_steps - first_error_step - 1)
