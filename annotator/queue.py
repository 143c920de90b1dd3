"""Which trace an annotator labels next.

The rules, in order:

1. A trace the annotator already holds (served, not yet submitted or skipped, hold
   not expired) comes back first, so a reload does not burn through the queue.
2. Screening: while a project asks for ``screening_questions`` and the annotator has
   answered fewer gold questions, only gold questions are served; after that, an
   annotator whose gold accuracy is below ``screening_accuracy`` gets no regular work.
3. Gold questions are mixed in at ``gold_rate``; gold traces are served to everyone
   who has not answered them and never count toward the overlap.
4. Otherwise the first regular trace in queue order that the annotator has not
   labelled or skipped and that has room: its real labels plus other annotators'
   live holds stay below ``annotators_per_trace``. Traces that already have labels
   come first (breadth-first: finish the overlap before starting new traces).

Who counts toward "N annotators": ``Trace.label_count``, kept by
``labelling.submit_label``: people who labelled it in Stepwise with a verdict or a
flag other than "gave up". Imported labels (the inactive ``import-<format>`` users)
do not count: they are evidence for review and agreement, not work done here.

The claim is race-free on PostgreSQL: the candidate row is locked with
``SELECT ... FOR UPDATE SKIP LOCKED`` and its room is checked again after the lock
is held (the statement that found it may have run on a snapshot taken before
another claimer committed); every claimer and every submitter takes that row lock,
so the re-check sees their work.

Queue orders are pluggable: each is a function giving the rank expression written
to ``Trace.queue_rank`` (import order, or a seeded hash for a random order). Ranks
are recomputed when the project's order or seed changes. An import ranks the traces
it writes itself (``import_ranks``), so the first claim after it does not rank a
hundred thousand rows while an annotator waits; traces it could not rank are ranked
on the next claim.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Exists,
    Expression,
    F,
    Func,
    OuterRef,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

from annotator.hiding import REFERENCE_GENERATOR
from annotator.models import (
    Annotation,
    AnnotationKind,
    Assignment,
    Project,
    QueueOrder,
    Step,
    Trace,
)
from annotator.quality import gold_answers

MAX_CLAIM_ATTEMPTS = 5


def _rank_import_order(project: Project) -> Expression:
    return F("id")


def _rank_random(project: Project) -> Expression:
    # PostgreSQL's seeded 64-bit hash: a different, reproducible permutation per seed.
    return Func(
        Cast(F("id"), BigIntegerField()),
        Cast(Value(project.queue_seed), BigIntegerField()),
        function="hashint8extended",
        output_field=BigIntegerField(),
    )


# Model-driven orders (PRM800K picked "convincing wrong-answer" solutions this way each
# round): a rank of ``strength << 32 | id`` puts the strongest cases first and keeps
# import order among equals; traces the order has nothing to say about come after all
# of them. Only ranks are written: annotators never see a score.
_LAST = 1 << 30  # strength bucket of the traces an order does not pick


def _rank_convincing_wrong(project: Project) -> Expression:
    """Wrong final answers with the highest lowest-step score under the queue run."""
    return RawSQL(
        """coalesce((SELECT (1000000 - round(least(greatest(ts.min_score, 0), 1) * 1000000))
                      FROM annotator_tracescore ts
                     WHERE ts.run_id = %s AND ts.trace_id = annotator_trace.id
                       AND annotator_trace.final_answer_correct = false
                       AND ts.min_score <> 'NaN'), %s)::bigint * 4294967296
           + annotator_trace.id""",
        [project.queue_run_id or 0, _LAST],
        output_field=BigIntegerField(),
    )


def _rank_runs_disagree(project: Project) -> Expression:
    """Traces whose finished runs predict the most different first errors, then the
    widest spread of their lowest-step scores."""
    return RawSQL(
        """coalesce((SELECT CASE WHEN count(*) < 2 THEN NULL
                               ELSE (1000 - count(DISTINCT ts.predicted_first_error)) * 1000000
                                    + round(1000000 - least(max(ts.min_score) - min(ts.min_score),
                                                            1) * 1000000) END
                      FROM annotator_tracescore ts JOIN annotator_scoringrun r ON r.id = ts.run_id
                     WHERE ts.trace_id = annotator_trace.id AND r.status = 'done'
                       AND ts.min_score <> 'NaN'), %s)::bigint * 4294967296
           + annotator_trace.id""",
        [_LAST],
        output_field=BigIntegerField(),
    )


def _rank_run_vs_humans(project: Project) -> Expression:
    """Traces where a latest label's first error differs from the queue run's
    prediction (a second opinion), most disputed labels first."""
    return RawSQL(
        """coalesce((SELECT 1000 - count(*) FROM annotator_annotation a
                       JOIN annotator_tracescore ts ON ts.trace_id = a.trace_id AND ts.run_id = %s
                      WHERE a.trace_id = annotator_trace.id AND a.is_latest
                        AND a.first_error_step IS NOT NULL
                        AND a.first_error_step IS DISTINCT FROM ts.predicted_first_error
                     HAVING count(*) > 0), %s)::bigint * 4294967296
           + annotator_trace.id""",
        [project.queue_run_id or 0, _LAST],
        output_field=BigIntegerField(),
    )


QUEUE_ORDERS: dict[str, Callable[[Project], Expression]] = {
    QueueOrder.IMPORT: _rank_import_order,
    QueueOrder.RANDOM: _rank_random,
    QueueOrder.CONVINCING_WRONG: _rank_convincing_wrong,
    QueueOrder.RUNS_DISAGREE: _rank_runs_disagree,
    QueueOrder.RUN_VS_HUMANS: _rank_run_vs_humans,
}


@dataclass(frozen=True)
class ImportRanks:
    """How an import ranks the traces it writes: decided once, in its transaction."""

    settings: Project  # an unsaved copy of the queue settings stored when it began
    # A new trace's rank from its id, written with the row; None (the random order):
    # ranked once the rows are written, by the seeded hash a claim ranks them with.
    rank: Callable[[int], int] | None
    first: bool  # the project had no traces: the import's ranks are all there are


def import_ranks(project: Project) -> ImportRanks | None:
    """How an import into ``project`` ranks its traces, or None to leave them to the
    next claim (the project's ranks are due to be recomputed anyway).

    A trace new to the project has no scores and no labels but the import's own, so
    the model-driven orders put it after every trace they pick, in import order:
    their expressions give it ``_LAST << 32`` plus its id. The settings are read as
    stored now, not as the caller loaded them: ranks written under an order the
    project has since left would pass for current ones."""
    settings, ranked_as = _stored_queue(project)
    first = not Trace.objects.filter(project=project).exists()
    if _rank_key(settings) != ranked_as and not first:
        return None
    if settings.queue_order == QueueOrder.IMPORT:
        rank = _identity
    elif settings.queue_order == QueueOrder.RANDOM:
        rank = None
    else:
        rank = _after_the_picked
    return ImportRanks(settings, rank, first)


def _identity(trace_id: int) -> int:
    return trace_id


def _after_the_picked(trace_id: int) -> int:
    return (_LAST << 32) + trace_id


def finish_import_ranks(ranks: ImportRanks, first_id: int) -> None:
    """After an import wrote its traces (ids from ``first_id``), before it commits:
    rank them if only the database can, and for a project's first traces record the
    order they are ranked for, so the next claim finds nothing to do.

    Under the project row lock, which a re-ranking claim and a settings change take
    too, held to the commit. When the project's ranks stand for another order by now
    (a claim re-ranked it for new settings while the import ran), the import's ranks
    are cleared, and the next claim ranks its traces."""
    key = _rank_key(ranks.settings)
    stored, ranked_as = _stored_queue(ranks.settings, lock=True)
    unranked = Trace.objects.filter(project=ranks.settings, queue_rank__isnull=True)
    if ranks.first and _rank_key(stored) == key:
        # Whatever order the empty project was ranked for (a claim before any trace),
        # its traces are the import's, ranked for the order it still asks for.
        if ranks.rank is None:
            _write_ranks(ranks.settings, unranked)
        if ranked_as != key:
            Project.objects.filter(pk=ranks.settings.pk).update(queue_ranked_as=key)
        return
    if ranked_as not in (key, ""):
        Trace.objects.filter(project=ranks.settings, id__gte=first_id).update(queue_rank=None)
    elif ranked_as == key and ranks.rank is None:
        _write_ranks(ranks.settings, unranked)


def _stored_queue(project: Project, *, lock: bool = False) -> tuple[Project, str]:
    """The project's queue settings as stored (an unsaved copy), and its ranked-as key."""
    rows = Project.objects.filter(pk=project.pk)
    order, seed, run_id, ranked_as = (
        # FOR NO KEY UPDATE: it waits for a re-ranking claim, not for rows being
        # inserted that point at the project (their foreign-key checks' KEY SHARE).
        (rows.select_for_update(no_key=True) if lock else rows)
        .values_list("queue_order", "queue_seed", "queue_run_id", "queue_ranked_as")
        .get()
    )
    return Project(
        pk=project.pk, queue_order=order, queue_seed=seed, queue_run_id=run_id
    ), ranked_as


def _rank_key(project: Project) -> str:
    # The queue run is part of the key: picking another run re-ranks.
    return f"{project.queue_order}:{project.queue_seed}:{project.queue_run_id or ''}"


def ensure_ranked(project: Project) -> None:
    """Give every trace of the project its rank in the current queue order.

    One cheap query when nothing changed (a partial index covers unranked rows).
    Ranking takes the project row lock: concurrent first claims after an import would
    otherwise update the same trace rows in different orders and deadlock."""
    key = _rank_key(project)
    if (
        project.queue_ranked_as == key
        and not Trace.objects.filter(project=project, queue_rank__isnull=True).exists()
    ):
        return
    with transaction.atomic():
        ranked_as = (
            Project.objects.select_for_update()
            .filter(pk=project.pk)
            .values_list("queue_ranked_as", flat=True)
            .get()
        )
        traces = Trace.objects.filter(project=project)
        if ranked_as != key:
            _write_ranks(project, traces)
            Project.objects.filter(pk=project.pk).update(queue_ranked_as=key)
        else:
            _write_ranks(project, traces.filter(queue_rank__isnull=True))
    project.queue_ranked_as = key


def _write_ranks(project: Project, traces) -> None:
    if connection.vendor != "postgresql" and project.queue_order == QueueOrder.RANDOM:
        # The embedded SQLite demo has no seeded hash function; rank in Python.
        # Random 62-bit ranks, like the hash's: traces ranked later (a new import)
        # interleave with the earlier ones instead of colliding with their ranks.
        for trace_id in traces.order_by("id").values_list("id", flat=True):
            rank = random.Random(f"{project.queue_seed}:{trace_id}").getrandbits(62)
            Trace.objects.filter(pk=trace_id).update(queue_rank=rank)
        return
    traces.update(queue_rank=QUEUE_ORDERS[project.queue_order](project))


@dataclass(frozen=True)
class ScreeningStatus:
    required: int
    answered: int
    correct: int
    accuracy_needed: float

    @property
    def pending(self) -> bool:
        return self.answered < self.required

    @property
    def passed(self) -> bool:
        if self.required == 0:
            return True
        return not self.pending and self.correct >= self.accuracy_needed * self.answered


def screening_status(project: Project, user) -> ScreeningStatus:
    if project.screening_questions == 0:
        return ScreeningStatus(0, 0, 0, project.screening_accuracy)
    answered, correct = gold_answers(project, user)
    return ScreeningStatus(
        project.screening_questions, answered, correct, project.screening_accuracy
    )


@dataclass(frozen=True)
class Served:
    """What "next" gives an annotator: a trace, or why there is none."""

    trace: Trace | None
    is_gold: bool = False
    reason: str = ""  # "done" or "screening-failed" when trace is None
    screening: ScreeningStatus | None = None


def _labelled_by(user) -> Exists:
    return Exists(
        Annotation.objects.filter(
            trace=OuterRef("pk"), annotator=user, kind=AnnotationKind.LABEL, is_latest=True
        )
    )


def _skipped_by(user) -> Exists:
    return Exists(Assignment.objects.filter(trace=OuterRef("pk"), annotator=user, skipped=True))


def _hold(project: Project, trace: Trace, user, now: datetime) -> None:
    """Insert or refresh the user's hold on ``trace`` (one INSERT ... ON CONFLICT)."""
    Assignment.objects.bulk_create(
        [
            Assignment(
                project=project,
                trace=trace,
                annotator=user,
                claimed_at=now,
                expires_at=now + timedelta(minutes=project.lock_minutes),
                skipped=False,
            )
        ],
        update_conflicts=True,
        unique_fields=["trace", "annotator"],
        update_fields=["claimed_at", "expires_at", "skipped"],
    )


# The two queries on every "next" are plain SQL: building them through the ORM cost
# more (about 5 ms each on a small CPU) than running them (well under 1 ms).
_HELD_SQL = """
SELECT s.trace_id FROM annotator_assignment s
WHERE s.project_id = %(project)s AND s.annotator_id = %(user)s
  AND NOT s.skipped AND s.expires_at > %(now)s
  AND NOT EXISTS (
    SELECT 1 FROM annotator_annotation a
    WHERE a.trace_id = s.trace_id AND a.annotator_id = %(user)s
      AND a.kind = 'label' AND a.is_latest)
ORDER BY s.claimed_at, s.id
LIMIT 1
"""

# Regular traces the user may be served, best first: room left (labels plus other
# people's live holds below N), not labelled or skipped by the user. The trace_queue
# index gives the order, so PostgreSQL stops at the first row that passes.
#
# The user's own labels sit at the head of that order (breadth-first puts the traces
# they started, still short of N, first), so the walk passes over them. The two
# anti-joins come first and the count of other people's holds last, so a row passed
# over costs one index probe, not three (``bench/annotation_latency.py --history``
# measures it; ``--explain`` prints the plan). A hashed NOT IN over the user's labels
# was tried and is slower: it reads all their labels on every claim.
_CANDIDATE_SQL = """
SELECT t.id FROM annotator_trace t
WHERE t.project_id = %(project)s AND NOT t.is_gold AND t.label_count < %(n)s
  AND (%(show_reference)s OR t.generator <> %(reference)s)
  AND NOT EXISTS (
    SELECT 1 FROM annotator_annotation a
    WHERE a.trace_id = t.id AND a.annotator_id = %(user)s AND a.kind = 'label' AND a.is_latest)
  AND NOT EXISTS (
    SELECT 1 FROM annotator_assignment s
    WHERE s.trace_id = t.id AND s.annotator_id = %(user)s AND s.skipped)
  AND t.label_count + (
    SELECT count(*) FROM annotator_assignment s
    WHERE s.trace_id = t.id AND NOT s.skipped AND s.expires_at > %(now)s
      AND s.annotator_id <> %(user)s) < %(n)s
  {passed_over}
ORDER BY t.label_count DESC, t.queue_rank, t.id
LIMIT 1
{lock}
"""

_LOAD_SQL = """
SELECT t.label_count + (
  SELECT count(*) FROM annotator_assignment s
  WHERE s.trace_id = t.id AND NOT s.skipped AND s.expires_at > %(now)s
    AND s.annotator_id <> %(user)s)
FROM annotator_trace t WHERE t.id = %(trace)s
"""


# _LOAD_SQL as an expression on the trace row, to fetch the trace and its load at once.
_LOAD_EXPR = """annotator_trace.label_count + (
  SELECT count(*) FROM annotator_assignment s
  WHERE s.trace_id = annotator_trace.id AND NOT s.skipped AND s.expires_at > %s
    AND s.annotator_id <> %s)"""

# The held trace, and whether the project has traces still to rank (a new import):
# one statement for what every "next" asks first.
_HELD_AND_UNRANKED_SQL = (
    "SELECT (" + _HELD_SQL + "), EXISTS (SELECT 1 FROM annotator_trace u"
    " WHERE u.project_id = %(project)s AND u.queue_rank IS NULL)"
)


def _locking(sql: str, passed_over: list[int] | None = None) -> str:
    """Fill in the row lock (PostgreSQL; SQLite, the single-writer demo database,
    serialises writers and has no row locks) and the ids already passed over."""
    lock = "FOR UPDATE OF t SKIP LOCKED" if connection.vendor == "postgresql" else ""
    skip_ids = ""
    if passed_over:
        skip_ids = "AND t.id NOT IN (" + ", ".join(str(int(i)) for i in passed_over) + ")"
    return sql.format(lock=lock, passed_over=skip_ids)


def _one(sql: str, params: dict):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def held_trace(project: Project, user, now: datetime) -> Trace | None:
    """The trace the user holds and has not labelled yet, if any."""
    trace_id = _one(_HELD_SQL, {"project": project.pk, "user": user.pk, "now": now})
    return None if trace_id is None else Trace.objects.select_related("problem").get(pk=trace_id)


_GOLD_SQL = """
SELECT t.id FROM annotator_trace t
WHERE t.project_id = %(project)s AND t.is_gold
  AND NOT EXISTS (
    SELECT 1 FROM annotator_annotation a
    WHERE a.trace_id = t.id AND a.annotator_id = %(user)s AND a.kind = 'label' AND a.is_latest)
  AND NOT EXISTS (
    SELECT 1 FROM annotator_assignment s
    WHERE s.trace_id = t.id AND s.annotator_id = %(user)s AND s.skipped)
ORDER BY t.queue_rank, t.id
LIMIT 1
{lock}
"""


def _claim_gold(project: Project, user, now: datetime) -> Trace | None:
    with transaction.atomic():
        trace_id = _one(_locking(_GOLD_SQL), {"project": project.pk, "user": user.pk})
        if trace_id is None:
            return None
        trace = Trace.objects.select_related("problem").get(pk=trace_id)
        _hold(project, trace, user, now)
        return trace


def _with_steps(traces):
    """On PostgreSQL, the traces with their step texts as an array (one statement for
    the served trace and its steps); ``_prime_steps`` hands them to ``step_texts``."""
    if connection.vendor != "postgresql":
        return traces
    steps = Step.objects.filter(trace=OuterRef("pk")).order_by("index").values("text")
    return traces.annotate(step_list=ArraySubquery(steps))


def _prime_steps(trace: Trace) -> None:
    if hasattr(trace, "step_list"):
        trace.step_texts = list(trace.step_list)  # fills the cached_property


def _claim_regular(project: Project, user, now: datetime) -> Trace | None:
    params = {
        "project": project.pk,
        "user": user.pk,
        "now": now,
        "n": project.annotators_per_trace,
        # A project that hides reference answers never serves its reference solutions.
        "show_reference": project.show_reference_answer,
        "reference": REFERENCE_GENERATOR,
    }
    passed_over: list[int] = []
    for _ in range(MAX_CLAIM_ATTEMPTS):
        with transaction.atomic():
            trace_id = _one(_locking(_CANDIDATE_SQL, passed_over), params)
            if trace_id is None:
                return None
            # Re-check under the row lock: this statement's snapshot sees every claim and
            # submission committed before we got the lock (the candidate query's snapshot
            # may be older), and every claimer and submitter takes that lock.
            # One statement for the re-check, the row and the steps the page shows.
            trace = _with_steps(
                Trace.objects.select_related("problem").annotate(
                    load=RawSQL(_LOAD_EXPR, [now, user.pk])
                )
            ).get(pk=trace_id)
            _prime_steps(trace)
            if trace.load < project.annotators_per_trace:
                _hold(project, trace, user, now)
                return trace
        passed_over.append(trace_id)
    return None


def claim_next(project: Project, user, *, now: datetime | None = None) -> Served:
    """Serve the user their next trace and hold it for ``project.lock_minutes``."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_HELD_AND_UNRANKED_SQL, {"project": project.pk, "user": user.pk, "now": now})
        held_id, unranked = cursor.fetchone()
    if unranked or project.queue_ranked_as != _rank_key(project):
        ensure_ranked(project)
    if held_id is not None:
        trace = Trace.objects.select_related("problem").get(pk=held_id)
        _hold(project, trace, user, now)
        return Served(trace, is_gold=trace.is_gold)
    screening = screening_status(project, user)
    if screening.pending:
        trace = _claim_gold(project, user, now)
        if trace is not None:
            return Served(trace, is_gold=True, screening=screening)
    if not _screened_in(screening, gold_left=False):
        return Served(None, reason="screening-failed", screening=screening)
    if project.gold_rate > 0 and random.random() < project.gold_rate:
        trace = _claim_gold(project, user, now)
        if trace is not None:
            return Served(trace, is_gold=True)
    trace = _claim_regular(project, user, now)
    if trace is None:
        return Served(None, reason="done")
    return Served(trace)


def _screened_in(screening: ScreeningStatus, *, gold_left: bool) -> bool:
    """Whether screening lets the annotator do regular work. With too few gold
    questions to finish screening, it is judged on the answers given so far."""
    if screening.passed:
        return True
    if screening.pending and not gold_left:
        return screening.correct >= screening.accuracy_needed * screening.answered
    return False


def may_label(project: Project, trace: Trace, user) -> bool:
    """Whether the user may label ``trace`` when they open it directly (a link, the
    URL, undo) rather than through "next": gold questions always, regular traces
    only once screening lets them."""
    if trace.is_gold or project.screening_questions == 0:
        return True
    screening = screening_status(project, user)
    if screening.passed:
        return True
    gold_left = screening.pending and (
        _one(_GOLD_SQL.format(lock=""), {"project": project.pk, "user": user.pk}) is not None
    )
    return _screened_in(screening, gold_left=gold_left)


class HoldRefused(Exception):
    """A claim of a trace opened by link that the project's rules do not allow."""


def holds(project: Project, user, now: datetime) -> list[int]:
    """Ids of the traces the user holds now (live, not skipped)."""
    return list(
        Assignment.objects.filter(
            project=project, annotator=user, skipped=False, expires_at__gt=now
        ).values_list("trace_id", flat=True)
    )


def claim_trace(project: Project, trace: Trace, user, *, now: datetime | None = None) -> None:
    """Hold a trace the user opened by link, on their explicit request (a POST).

    Refused when the user already holds ``project.max_holds_per_person`` other traces
    (one person holding every id would empty the queue for everyone for
    ``lock_minutes``), or when the trace has no room: its labels plus other people's
    live holds reach N. A trace the user labelled already counts once, and gold
    questions are for everyone, so neither needs room."""
    now = now or timezone.now()
    held = [t for t in holds(project, user, now) if t != trace.pk]
    if len(held) >= project.max_holds_per_person:
        raise HoldRefused(
            f"You hold {len(held)} other traces, the most this project allows at once: "
            "submit or skip one of them first."
        )
    with transaction.atomic():
        params = {"user": user.pk, "now": now, "trace": trace.pk}
        load = _one(
            _LOAD_SQL + (" FOR UPDATE" if connection.vendor == "postgresql" else ""), params
        )
        labelled = Annotation.objects.filter(
            trace=trace, annotator=user, kind=AnnotationKind.LABEL, is_latest=True
        ).exists()
        if not trace.is_gold and not labelled and load >= project.annotators_per_trace:
            raise HoldRefused(
                f"This trace already has its {project.annotators_per_trace} annotator(s), "
                "counting people who hold it now."
            )
        _hold(project, trace, user, now)


def holds_trace(trace: Trace, user, *, now: datetime | None = None) -> bool:
    """Whether the user holds ``trace`` now."""
    return Assignment.objects.filter(
        trace=trace, annotator=user, skipped=False, expires_at__gt=now or timezone.now()
    ).exists()


def skip(project: Project, trace: Trace, user, *, now: datetime | None = None) -> None:
    """Release the user's hold and never serve them this trace again."""
    now = now or timezone.now()
    Assignment.objects.bulk_create(
        [
            Assignment(
                project=project,
                trace=trace,
                annotator=user,
                claimed_at=now,
                expires_at=None,
                skipped=True,
            )
        ],
        update_conflicts=True,
        unique_fields=["trace", "annotator"],
        update_fields=["expires_at", "skipped"],
    )


def release(trace: Trace, user) -> None:
    Assignment.objects.filter(trace=trace, annotator=user, skipped=False).delete()
