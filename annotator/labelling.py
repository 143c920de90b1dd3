"""Turning what an annotator entered into a stored label, PRM800K style.

A label is a first error (0-based step index, ``-1`` for "all steps correct") and
optionally a rating per step (-1, 0, +1). The rules follow PRM800K's labelling tool:

- marking step k as the first error makes it -1, counts earlier unrated steps as
  correct (+1) and leaves later steps "not judged" (``None``);
- "all correct" rates every unrated step +1;
- with ratings alone, the first step rated -1 is the first error, and a trace whose
  every step is rated without a -1 is all correct.

Under the per-step scheme (``LabelScheme.PER_STEP``) nothing is filled in silently:
every step up to the first error must carry an explicit rating (the workspace's
``e`` and ``c`` keys fill them in visibly). Under the first-error scheme the earlier
steps are filled with +1.

``normalise_label`` is pure; ``submit_label`` stores a new version.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from annotator.models import Annotation, AnnotationKind, LabelScheme, Project, Trace
from annotator.queue import release

FLAGS = ("bad_problem", "gave_up", "bad_step_split")
RATINGS = (-1, 0, 1)
MAX_SECONDS = 24 * 3600
PER_TRACE_KINDS = (AnnotationKind.ADJUDICATION, AnnotationKind.GOLD)


class LabelError(ValueError):
    """The submission cannot be stored; the message is shown to the annotator."""


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
    if missing and scheme == LabelScheme.PER_STEP:
        listed = ", ".join(str(i) for i in missing[:5])
        raise LabelError(f"rate every step before the first error (unrated: {listed})")
    out: list[int | None] = [1 if r is None else r for r in ratings[:judged]]
    if first_error_step >= 0:
        out.append(-1)
        out.extend([None] * (num_steps - first_error_step - 1))
    return Label(first_error_step, out)


def counts_toward_overlap(annotation: Annotation | None) -> bool:
    return annotation is not None and not annotation.gave_up


def append_version(
    trace: Trace, user, kind: str, label: Label, **fields
) -> tuple[Annotation, Annotation | None]:
    """Insert ``label`` as the user's newest ``kind`` annotation of ``trace`` and flip
    the previous latest version; returns (new, previous). Call inside a transaction
    that holds the trace row lock, so concurrent versions of one trace queue up.

    Labels are versioned per annotator. An adjudication or a gold label is the trace's
    one verdict, so it is versioned per trace: a second reviewer's replaces the first's."""
    mine = Annotation.objects.filter(trace=trace, kind=kind, is_latest=True)
    if kind not in PER_TRACE_KINDS:
        mine = mine.filter(annotator=user, external_annotator="")
    previous = mine.only("id", "version", "gave_up").order_by("-id").first()
    if previous is not None:
        mine.update(is_latest=False)
    annotation = Annotation.objects.create(
        trace=trace,
        annotator=user,
        kind=kind,
        first_error_step=label.first_error_step,
        step_ratings=label.step_ratings,
        bad_problem=label.flag == "bad_problem",
        gave_up=label.flag == "gave_up",
        bad_step_split=label.flag == "bad_step_split",
        flag_reason=label.reason,
        version=previous.version + 1 if previous else 1,
        is_latest=True,
        **fields,
    )
    return annotation, previous


def lock_trace(trace: Trace) -> None:
    Trace.objects.select_for_update().filter(pk=trace.pk).values_list("pk").get()


def submit_label(
    project: Project, trace: Trace, user, label: Label, *, seconds_spent: float | None = None
) -> Annotation:
    """Store ``label`` as the user's newest version for ``trace``; release their hold.

    The trace row is locked first, so two submissions of one trace (a double press of
    Enter, two tabs) run one after the other, and ``label_count`` stays exact."""
    if seconds_spent is not None:
        seconds_spent = min(max(seconds_spent, 0.0), MAX_SECONDS)
    with transaction.atomic():
        lock_trace(trace)
        annotation, previous = append_version(
            trace, user, AnnotationKind.LABEL, label, seconds_spent=seconds_spent
        )
        delta = int(counts_toward_overlap(annotation)) - int(counts_toward_overlap(previous))
        if delta:
            Trace.objects.filter(pk=trace.pk).update(label_count=F("label_count") + delta)
        release(trace, user)
    return annotation


def last_submission(project: Project, user) -> Annotation | None:
    """The user's most recent label in the project: what ``u`` (undo) brings back."""
    return (
        Annotation.objects.filter(
            trace__project=project, annotator=user, kind=AnnotationKind.LABEL, is_latest=True
        )
        .order_by("-created_at", "-id")
        .first()
    )


def parse_ratings(data, num_steps: int) -> list[int | None]:
    """Ratings from form fields ``rating-0`` .. ``rating-{n-1}`` ("" = unrated)."""
    ratings: list[int | None] = []
    for i in range(num_steps):
        raw = (data.get(f"rating-{i}") or "").strip()
        if raw == "":
            ratings.append(None)
            continue
        try:
            ratings.append(int(raw.replace("+", "")))
        except ValueError:
            raise LabelError(f"step {i}: rating {raw!r} is not -1, 0 or +1") from None
    return ratings


def parse_first_error(data) -> int | None:
    raw = (data.get("first_error_step") or "").strip()
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise LabelError(f"first error {raw!r} is not a step number") from None
