"""Storing labels: versions per annotator, the trace lock, the form's fields.

The pure rules (``normalise_label``, ``Label``, ``LabelError``) live in
:mod:`scoring.labels`, shared with the format readers; they are re-exported here
for the views. ``check_label`` is the one check of a label a member submits (the
Label page and the API both call it); ``submit_label`` stores it as a new version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from annotator import database
from annotator.filters import BadParameter, text_param
from annotator.models import (
    IMPORTER_PREFIX,
    Annotation,
    AnnotationKind,
    Assignment,
    LabelScheme,
    Membership,
    Project,
    Trace,
    Verdict,
)
from annotator.queue import (
    LIVE_HOLD_SQL,
    latest_label_sql,
    may_label,
    others_holding_sql,
    release,
)

# Re-exported (``X as X``) for the views and tests that import them from here.
from scoring.labels import FLAGS as FLAGS
from scoring.labels import RATINGS as RATINGS
from scoring.labels import Label, LabelError
from scoring.labels import normalise_label as normalise_label

MAX_SECONDS = 24 * 3600
MAX_REASON_LENGTH = 2000
PER_TRACE_KINDS = (AnnotationKind.ADJUDICATION, AnnotationKind.GOLD)
SCREENING_FIRST = (
    "This project screens new annotators: answer its screening questions (Label -> next) "
    "before labelling other traces."
)
FLAG_WITH_VERDICT = (
    "A flagged label carries no verdict: clear the flag, or clear the first error "
    "(and any -1 rating) to flag the trace."
)

CHOOSE_FIRST_ERROR = "Choose the first error: a step, or all steps correct."


class LabelRefused(LabelError):
    """A submitted label that breaks a rule. ``field`` names the part at fault
    (``step_ratings``, ``flag``, ``reason``), or is None for the label as a whole."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotScreened(LabelError):
    """A label for a regular trace from someone the project's screening has not passed."""

    def __init__(self) -> None:
        super().__init__(SCREENING_FIRST)


def check_label(
    project: Project,
    trace: Trace,
    user,
    first_error_step: int | None,
    ratings: list[int | None] | None,
    flag: str = "",
    reason: str = "",
) -> Label:
    """The label ``user`` submits for ``trace``, normalised to the
    project's scheme, or :class:`LabelRefused` / :class:`NotScreened`.

    The one check of a submitted label: the Label page and the API parse their own
    input (form fields, JSON) and call this, each answering the error its own way (the
    form shown again with the message; a 400 naming the field, a 409 for screening).
    ``ratings``: one per step, None for an unrated step; None or [] for no ratings."""
    num_steps = trace.num_steps
    ratings = ratings or [None] * num_steps
    if len(ratings) != num_steps:
        raise LabelRefused(f"{num_steps} ratings expected, one per step", "step_ratings")
    if any(r not in RATINGS for r in ratings if r is not None):
        raise LabelRefused("step ratings must be -1, 0 or +1", "step_ratings")
    if flag and flag not in FLAGS:
        raise LabelRefused(f"unknown flag {flag!r}", "flag")
    if flag and (first_error_step is not None or -1 in ratings):
        # A flagged label carries no verdict. Storing the flag and dropping the first
        # error would keep its -1 rating, a first error in all but name: refuse instead.
        raise LabelRefused(FLAG_WITH_VERDICT, "flag")
    try:  # the free-text rule (no NUL, which PostgreSQL refuses; a length cap)
        reason = text_param({"reason": reason.strip()}, "reason", max_length=MAX_REASON_LENGTH)
    except BadParameter as exc:
        raise LabelRefused(str(exc), exc.field) from None
    try:
        label = normalise_label(
            num_steps, project.label_scheme, first_error_step, ratings, flag, reason
        )
    except LabelError as exc:  # the rules that tie the fields together
        raise LabelRefused(str(exc)) from None
    if not may_label(project, trace, user):
        raise NotScreened()
    return label


def counts_toward_overlap(annotation: Annotation | None) -> bool:
    return annotation is not None and not annotation.gave_up


_UNKNOWN = object()  # "look the previous version up" (a caller may know it already)


def append_version(
    trace: Trace, user, kind: str, label: Label, *, previous=_UNKNOWN, **fields
) -> tuple[Annotation, Annotation | None]:
    """Insert ``label`` as the user's newest ``kind`` annotation of ``trace`` and flip
    the previous latest version; returns (new, previous). Call inside a transaction
    that holds the trace row lock, so concurrent versions of one trace queue up.
    ``previous``: the latest version (id, version, gave_up) or None, where the caller
    read it already under that lock.

    Labels are versioned per annotator. An adjudication or a gold label is the trace's
    one verdict, so it is versioned per trace: a second reviewer's replaces the first's."""
    mine = Annotation.objects.filter(trace=trace, kind=kind, is_latest=True)
    if kind not in PER_TRACE_KINDS:
        mine = mine.filter(annotator=user, external_annotator="")
    if previous is _UNKNOWN:
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
    """Lock the trace's row to the end of the transaction, where the database has row
    locks (SQLite, the demo's database, serialises writers instead)."""
    if database.has_row_locks():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM annotator_trace WHERE id = %s FOR UPDATE", [trace.pk])
            if cursor.fetchone() is None:
                raise Trace.DoesNotExist(f"trace {trace.pk} is gone")


class TraceFull(LabelError):
    """A new label for a trace that already has its N annotators."""


# What the N check needs (the labels that count, other people's live holds, whether
# the submitter holds it) and the submitter's latest version (their own, with no
# external labeller, as ``append_version`` versions it: at most one, by the
# annotation_one_latest constraint). Read once the trace row is locked, in a statement
# of its own: a lock taken in this statement (FOR UPDATE OF t) would refresh t's row
# when granted but not the rows joined to it nor its subqueries, so a submit that
# waited for a concurrent one of the same trace would miss the label that one stored
# and insert a second latest version (a unique violation: a 500 on a double press).
_LOAD_SQL = f"""
SELECT t.label_count, {others_holding_sql("t")},
  EXISTS (SELECT 1 FROM annotator_assignment s
   WHERE s.trace_id = t.id AND s.annotator_id = %(user)s AND {LIVE_HOLD_SQL}),
  a.id, a.version, a.gave_up
FROM annotator_trace t
LEFT JOIN annotator_annotation a ON {latest_label_sql("t.id")} AND a.external_annotator = ''
WHERE t.id = %(trace)s
"""

# Release the submitter's hold and move label_count in one round trip (PostgreSQL's
# data-modifying WITH; SQLite, the demo's database, takes two statements).
_RELEASE_AND_COUNT_SQL = """
WITH released AS (
  DELETE FROM annotator_assignment
  WHERE trace_id = %(trace)s AND annotator_id = %(user)s AND NOT skipped)
UPDATE annotator_trace SET label_count = label_count + %(delta)s WHERE id = %(trace)s
"""


def _lock_and_load(trace: Trace, user) -> tuple[int, int, bool, Annotation | None]:
    """(label_count, other people's live holds, whether the user holds it, the user's
    latest label) with the trace row locked, read once the lock is held."""
    lock_trace(trace)
    with connection.cursor() as cursor:
        cursor.execute(_LOAD_SQL, {"trace": trace.pk, "user": user.pk, "now": timezone.now()})
        label_count, others_holding, mine, prev_id, prev_version, prev_gave_up = cursor.fetchone()
    previous = None
    if prev_id is not None:
        previous = Annotation(id=prev_id, version=prev_version, gave_up=bool(prev_gave_up))
    return label_count, others_holding, bool(mine), previous


def _release_and_count(trace: Trace, user, delta: int) -> None:
    if database.has_writable_cte():
        with connection.cursor() as cursor:
            params = {"trace": trace.pk, "user": user.pk, "delta": delta}
            cursor.execute(_RELEASE_AND_COUNT_SQL, params)
        return
    if delta:
        Trace.objects.filter(pk=trace.pk).update(label_count=F("label_count") + delta)
    release(trace, user)


def submit_label(
    project: Project,
    trace: Trace,
    user,
    label: Label,
    *,
    seconds_spent: float | None = None,
    limit_to_n: bool = False,
) -> Annotation:
    """Store ``label`` as the user's newest version for ``trace``; release their hold.

    The trace row is locked first, so two submissions of one trace (a double press of
    Enter, two tabs) run one after the other, and ``label_count`` stays exact.

    With ``limit_to_n`` (the Label page and the API, for annotators) a label that would
    be the trace's N+1th (a direct POST, a stale tab) is refused with
    :class:`TraceFull`. Without a hold of their own, other people's live holds count
    too, so a claimed trace is not taken from under its holder. Gold questions are
    answered by everyone."""
    if seconds_spent is not None:
        # NaN (the page's ``served_at`` is whatever the form sends) passes min and max.
        finite = math.isfinite(seconds_spent)
        seconds_spent = min(max(seconds_spent, 0.0), MAX_SECONDS) if finite else None
    with transaction.atomic():
        label_count, others_holding, mine, previous = _lock_and_load(trace, user)
        annotation, previous = append_version(
            trace,
            user,
            AnnotationKind.LABEL,
            label,
            previous=previous,
            seconds_spent=seconds_spent,
        )
        delta = int(counts_toward_overlap(annotation)) - int(counts_toward_overlap(previous))
        load = label_count if mine else label_count + others_holding
        n = project.annotators_per_trace
        if limit_to_n and delta > 0 and not trace.is_gold and load >= n:
            raise TraceFull(
                f"This trace already has its {n} label{'s' if n != 1 else ''}"
                f"{'' if mine or not others_holding else ' (counting people who hold it now)'}: "
                "yours was not stored. Only reviewers add more; skip it (s) to move on."
            )
        _release_and_count(trace, user, delta)
    return annotation


def last_submission(project: Project, user) -> Annotation | None:
    """The user's most recent label in the project: what ``u`` (undo) brings back."""
    return (
        Annotation.objects.latest_label_by(user)
        .filter(trace__project=project)
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
    error, so the first-error rules apply whatever the project's scheme. The forms
    start with no choice made (a default would be a verdict nobody gave), so a form
    sent without one is refused."""
    first_error = parse_first_error(data)
    if first_error is None:
        raise LabelError(CHOOSE_FIRST_ERROR)
    return normalise_label(
        num_steps, LabelScheme.FIRST_ERROR, first_error, parse_ratings(data, num_steps)
    )


def human_first_error(membership: Membership, trace: Trace) -> int | None:
    """The human first error shown beside the model scores, on every page alike: the
    verdict of the trace's latest annotations the member may see (all of them for
    reviewers and owners, their own for a blind annotator); None without one."""
    annotations = trace.annotations.latest_versions().visible_to(membership)
    return Verdict.resolve(annotations).first_error_step


def fully_labelled() -> Q:
    """A filter on ``Trace``: the trace has what a user calls "fully labelled", its N
    labels given here (``label_count``, the overlap the queue fills) or a verdict it
    will not get from the queue: an imported label with a verdict (an ``import-*``
    user's, e.g. expert labels) or a reviewer's adjudication."""
    settled = Annotation.objects.filter(
        trace=OuterRef("pk"), is_latest=True, first_error_step__isnull=False
    ).filter(
        Q(kind=AnnotationKind.ADJUDICATION)
        | Q(kind=AnnotationKind.LABEL, annotator__username__startswith=IMPORTER_PREFIX)
    )
    return Q(label_count__gte=F("project__annotators_per_trace")) | Q(Exists(settled))


@dataclass(frozen=True)
class Progress:
    """The Label page's progress line."""

    today: int  # the user's labels in this project since local midnight
    total: int  # the user's labels in this project
    # Regular traces the queue may still serve the user: short of their N labels, not
    # labelled or skipped by them, not hidden from them. It drops with every label the
    # user gives (a count of every trace short of N would not move until N people
    # labelled one).
    left: int
    position: int | None = None  # the shown trace's place among the traces the member sees
    of: int | None = None  # how many traces the member sees


def progress(membership: Membership, trace: Trace | None = None) -> Progress:
    """Two aggregate queries, three with ``trace`` (its place in the project, in id
    order, among the traces the member may see: reference traces hidden from the member
    are not counted). The page loads it after the trace, off the submit path."""
    project = membership.project
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = (
        Annotation.objects.latest_label_by(membership.user_id)
        .filter(trace__project=project)
        .aggregate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=midnight)))
    )
    short = Trace.objects.filter(
        project=project, is_gold=False, label_count__lt=project.annotators_per_trace
    ).visible_to(membership)
    # The traces short of N less those the user labelled or skipped, in one scan with the
    # user's own rows hashed once. Measured at 100k traces (bench database of
    # bench/annotation_latency.py): an EXISTS per trace took 195 ms, this 54 ms, the old
    # count of every trace short of N (which did not move with the user's labels) 37 ms.
    done = Annotation.objects.latest_label_by(membership.user_id).values("trace_id")
    skipped = Assignment.objects.filter(annotator_id=membership.user_id, skipped=True)
    counts = short.aggregate(
        short=Count("id"),
        theirs=Count("id", filter=Q(pk__in=done) | Q(pk__in=skipped.values("trace_id"))),
    )
    left = counts["short"] - counts["theirs"]
    place = {"position": None, "of": None}
    if trace is not None:
        place = (
            Trace.objects.filter(project=project)
            .visible_to(membership)
            .aggregate(position=Count("id", filter=Q(id__lte=trace.pk)), of=Count("id"))
        )
    return Progress(today=mine["today"], total=mine["total"], left=left, **place)
