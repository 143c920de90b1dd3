"""Review: disagreements, adjudication, accept/reject/send back, gold questions.

A disagreement is a trace whose latest labels (annotators' and imported ones) give
two or more different first errors; "all correct" (-1) is a first error like any
other here. Labels without a verdict (gave up, bad problem) are not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet

from annotator.labelling import Label, append_version, lock_trace
from annotator.models import (
    Annotation,
    AnnotationKind,
    Membership,
    Project,
    Review,
    ReviewDecision,
    Trace,
    Verdict,
)

MAX_ROWS = 200


def _verdicts(project: Project) -> QuerySet[Annotation]:
    return (
        Annotation.objects.latest_versions()
        .labels()
        .filter(trace__project=project, first_error_step__isnull=False)
    )


@dataclass
class DisagreementRow:
    trace: Trace
    labels: list[tuple[str, int]]  # (labeller, first error)
    adjudicated: Annotation | None


def disagreements(
    project: Project, *, include_adjudicated: bool = False, limit: int = MAX_ROWS
) -> list[DisagreementRow]:
    disputed = (
        _verdicts(project)
        .order_by()
        .values("trace_id")
        .annotate(n=Count("first_error_step", distinct=True))
        .filter(n__gt=1)
        .values("trace_id")
    )
    traces = Trace.objects.filter(pk__in=disputed).select_related("problem").order_by("id")
    if not include_adjudicated:
        traces = traces.exclude(
            Exists(
                Annotation.objects.latest_versions().filter(
                    trace=OuterRef("pk"), kind=AnnotationKind.ADJUDICATION
                )
            )
        )
    traces = list(traces[:limit])
    rows = {t.pk: DisagreementRow(t, [], None) for t in traces}
    for a in (
        Annotation.objects.latest_versions()
        .filter(trace_id__in=rows, kind__in=[AnnotationKind.LABEL, AnnotationKind.ADJUDICATION])
        .select_related("annotator")
        .order_by("id")
    ):
        row = rows[a.trace_id]
        if a.kind == AnnotationKind.ADJUDICATION:
            row.adjudicated = a
        elif a.first_error_step is not None:
            row.labels.append((a.rater_name, a.first_error_step))
    return list(rows.values())


def trace_context(membership: Membership, trace: Trace) -> dict:
    """Everything the side-by-side review page shows for one trace."""
    steps = trace.step_texts
    annotations = list(
        trace.annotations.latest_versions()
        .select_related("annotator")
        .prefetch_related("reviews")
        .order_by("kind", "id")
    )
    columns = []
    for a in annotations:
        reviews = list(a.reviews.all())
        columns.append(
            {
                "annotation": a,
                "name": a.rater_name,
                "ratings": a.ratings_by_step(len(steps)),
                "review": reviews[-1] if reviews else None,
            }
        )
    step_rows = [
        (
            index,
            text,
            [(c["ratings"][index], c["annotation"].first_error_step == index) for c in columns],
        )
        for index, text in enumerate(steps)
    ]
    adjudication = next((a for a in annotations if a.kind == AnnotationKind.ADJUDICATION), None)
    gold = next((a for a in annotations if a.kind == AnnotationKind.GOLD), None)
    return {
        "project": membership.project,
        "membership": membership,
        "trace": trace,
        "columns": columns,
        "step_rows": step_rows,
        "adjudication": adjudication,
        "gold": gold,
        "verdict": Verdict.resolve(annotations),
        "steps": list(enumerate(steps)),
    }


def adjudicate(trace: Trace, reviewer, label: Label, note: str = "") -> Annotation:
    """The reviewer's label for the trace; exports prefer it over annotators' labels."""
    with transaction.atomic():
        lock_trace(trace)
        return append_version(trace, reviewer, AnnotationKind.ADJUDICATION, label, note=note)[0]


def mark_gold(trace: Trace, reviewer, label: Label) -> Annotation:
    """Make the trace a gold question with ``label`` as its reference answer."""
    with transaction.atomic():
        lock_trace(trace)
        annotation = append_version(trace, reviewer, AnnotationKind.GOLD, label)[0]
        Trace.objects.filter(pk=trace.pk).update(is_gold=True)
    trace.is_gold = True
    return annotation


def unmark_gold(trace: Trace) -> None:
    """Back to a regular trace; the gold labels stay in the history."""
    Trace.objects.filter(pk=trace.pk).update(is_gold=False)
    trace.is_gold = False


def decide(annotation: Annotation, reviewer, decision: str, comment: str = "") -> Review:
    return Review.objects.create(
        annotation=annotation, reviewer=reviewer, decision=decision, comment=comment.strip()
    )


def send_back(trace: Trace, reviewer, comment: str) -> int:
    """Ask every annotator of the trace (not imported labels) to look at it again."""
    current = trace.annotations.latest_versions().labels().filter(annotator__is_active=True)
    reviews = [
        Review(annotation=a, reviewer=reviewer, decision=ReviewDecision.SEND_BACK, comment=comment)
        for a in current
    ]
    Review.objects.bulk_create(reviews)
    return len(reviews)


def open_requests(project: Project, user) -> QuerySet[Review]:
    """Rejections and send-backs of the user's current annotations (their labels, a
    reviewer's adjudications too), not yet superseded by a newer version of the
    annotation or a later review."""
    current = Annotation.objects.latest_versions().by(user).filter(trace__project=project)
    later = Review.objects.filter(annotation=OuterRef("annotation"), pk__gt=OuterRef("pk"))
    return (
        Review.objects.filter(
            annotation__in=current,
            decision__in=[ReviewDecision.SEND_BACK, ReviewDecision.REJECT],
        )
        .exclude(Exists(later))
        .order_by("-id")
    )
