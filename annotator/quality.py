"""Quality figures of a project: agreement, gold accuracy and throughput per annotator.

Reads the database and hands plain data to ``annotator.agreement``. Who is compared:
every latest label with a verdict, imported ones included (named ``import-x:labeller``),
so a reviewer can see how the team agrees with an imported benchmark's labels.
Gold accuracy and throughput are about people labelling in Stepwise only.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Exists, F, OuterRef, Q, Sum, Window

from annotator import agreement
from annotator.models import (
    Annotation,
    AnnotationKind,
    Assignment,
    Membership,
    Project,
    Role,
    rater_name,
)


@dataclass
class AnnotatorRow:
    name: str
    labelled: int = 0
    agreement: agreement.RaterAgreement | None = None
    gold_answered: int = 0
    gold_correct: int = 0
    timed_traces: int = 0
    seconds: float = 0.0
    median_seconds: float | None = None

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None

    @property
    def traces_per_hour(self) -> float | None:
        return self.timed_traces / (self.seconds / 3600) if self.seconds > 0 else None


@dataclass
class ProjectQuality:
    summary: agreement.Summary
    pairs: list[agreement.PairAgreement]
    annotators: list[AnnotatorRow] = field(default_factory=list)


def matches_gold() -> Exists:
    """Whether an annotation (the outer row) gives its trace's gold first error."""
    return Exists(
        Annotation.objects.latest_versions().filter(
            trace=OuterRef("trace"),
            kind=AnnotationKind.GOLD,
            first_error_step=OuterRef("first_error_step"),
        )
    )


def gold_answers_by_annotator(project: Project, user_ids=None) -> dict[int, tuple[int, int]]:
    """``{user_id: (answered, correct)}`` on the project's gold questions.

    Each gold question counts once, judged on the annotator's first answer (version
    1): an undo or a later edit cannot turn a miss into a hit. A gold question skipped
    without an answer counts as answered and wrong, so skipping cannot dodge screening.
    """
    first = Annotation.objects.filter(
        trace__project=project, trace__is_gold=True, kind=AnnotationKind.LABEL, version=1
    )
    skipped = Assignment.objects.filter(project=project, trace__is_gold=True, skipped=True).exclude(
        Exists(
            Annotation.objects.filter(
                trace=OuterRef("trace"),
                annotator=OuterRef("annotator"),
                kind=AnnotationKind.LABEL,
            )
        )
    )
    if user_ids is not None:
        first = first.filter(annotator_id__in=user_ids)
        skipped = skipped.filter(annotator_id__in=user_ids)
    answers: dict[int, tuple[int, int]] = {}
    for row in (
        first.order_by()
        .values("annotator_id")
        .annotate(answered=Count("id"), correct=Count("id", filter=matches_gold()))
    ):
        answers[row["annotator_id"]] = (row["answered"], row["correct"])
    for row in skipped.order_by().values("annotator_id").annotate(n=Count("id")):
        answered, correct = answers.get(row["annotator_id"], (0, 0))
        answers[row["annotator_id"]] = (answered + row["n"], correct)
    return answers


def gold_answers(project: Project, user) -> tuple[int, int]:
    """(answered, correct) for one annotator; see ``gold_answers_by_annotator``."""
    return gold_answers_by_annotator(project, [user.pk]).get(user.pk, (0, 0))


def collect_labels(project: Project) -> tuple[dict, dict]:
    """({rater: {trace_id: first_error}}, {rater: {trace_id: ratings}}) over the traces
    that two or more raters labelled with a verdict."""
    # The raters per trace counted by a window over the same scan, not by a second
    # scan of the project's labels grouped by trace (half the time at 100k traces).
    verdicts = (
        Annotation.objects.latest_versions()
        .labels()
        .filter(trace__project=project, first_error_step__isnull=False)
        .annotate(raters=Window(Count("id"), partition_by=F("trace_id")))
    )
    labels: dict[str, dict[int, int]] = defaultdict(dict)
    ratings: dict[str, dict[int, list]] = defaultdict(dict)
    rows = verdicts.filter(raters__gt=1).values_list(
        "trace_id", "annotator__username", "external_annotator", "first_error_step", "step_ratings"
    )
    for trace_id, username, external, first_error, step_ratings in rows.iterator(chunk_size=5000):
        rater = rater_name(username, external)
        labels[rater][trace_id] = first_error
        if step_ratings:
            ratings[rater][trace_id] = step_ratings
    return dict(labels), dict(ratings)


def project_quality(project: Project) -> ProjectQuality:
    labels, ratings = collect_labels(project)
    pairs = agreement.pair_agreements(labels, ratings)
    quality = ProjectQuality(summary=agreement.summarise(labels, pairs), pairs=pairs)
    by_rater = {r.rater: r for r in agreement.rater_agreements(labels)}

    members = (
        Membership.objects.filter(project=project, role=Role.ANNOTATOR)
        .select_related("user")
        .order_by("user__username")
    )
    rows: dict[int, AnnotatorRow] = {}
    for m in members:
        rows[m.user_id] = AnnotatorRow(m.user.username)
    # One pass over the project's labels, one row per author and trace: who labelled
    # (reviewers and owners who did count too), their latest labels, and the time they
    # spent on each trace (all versions: an undo and fix adds up).
    per_author = (
        Annotation.objects.filter(trace__project=project, kind=AnnotationKind.LABEL)
        .order_by()
        .values_list("annotator_id", "annotator__username", "annotator__is_active", "trace_id")
        .annotate(latest=Count("id", filter=Q(is_latest=True)), seconds=Sum("seconds_spent"))
    )
    latest: dict[int, int] = defaultdict(int)
    per_trace: dict[int, list[float]] = defaultdict(list)
    for user_id, username, active, _, n_latest, seconds in per_author:
        if active:
            rows.setdefault(user_id, AnnotatorRow(username))
        latest[user_id] += n_latest
        if seconds is not None:
            per_trace[user_id].append(seconds)
    for user_id, row in rows.items():
        row.labelled = latest.get(user_id, 0)

    for user_id, (answered, correct) in gold_answers_by_annotator(project, list(rows)).items():
        rows[user_id].gold_answered = answered
        rows[user_id].gold_correct = correct

    for user_id, times in per_trace.items():
        if user_id not in rows:
            continue
        rows[user_id].timed_traces = len(times)
        rows[user_id].seconds = sum(times)
        rows[user_id].median_seconds = statistics.median(times)

    for row in rows.values():
        row.agreement = by_rater.get(row.name)
    quality.annotators = sorted(rows.values(), key=lambda r: r.name)
    return quality
