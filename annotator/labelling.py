"""Storing labels: versions per annotator, the trace lock, the form's fields.

The pure rules (``normalise_label``, ``Label``, ``LabelError``) live in
:mod:`scoring.labels`, shared with the format readers; they are re-exported here
for the views. ``submit_label`` stores a new version.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from annotator.models import Annotation, AnnotationKind, LabelScheme, Project, Trace
from annotator.queue import release

# Re-exported (``X as X``) for the views and tests that import them from here.
from scoring.labels import FLAGS as FLAGS
from scoring.labels import RATINGS as RATINGS
from scoring.labels import Label, LabelError
from scoring.labels import normalise_label as normalise_label

MAX_SECONDS = 24 * 3600
PER_TRACE_KINDS = (AnnotationKind.ADJUDICATION, AnnotationKind.GOLD)


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


def reviewer_label(data, num_steps: int) -> Label:
    """A reviewer's label from the adjudicate or gold form. Reviewers name the first
    error, so the first-error rules apply whatever the project's scheme."""
    return normalise_label(
        num_steps, LabelScheme.FIRST_ERROR, parse_first_error(data), parse_ratings(data, num_steps)
    )
