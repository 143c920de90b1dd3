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

Ranks (``Trace.queue_rank``, the queue order) live in ``annotator/ranking.py``: a
claim re-ranks the project first when its order changed or traces are unranked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from annotator import database
from annotator.hiding import REFERENCE_GENERATOR
from annotator.models import (
    Annotation,
    Assignment,
    Problem,
    Project,
    Trace,
)
from annotator.quality import gold_answers
from annotator.ranking import ensure_ranked, rank_key

MAX_CLAIM_ATTEMPTS = 5


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


def _hold(project: Project, trace: Trace, user, now: datetime) -> None:
    """Insert or refresh the user's hold on ``trace`` (one INSERT ... ON CONFLICT).

    The transaction that takes the hold commits without waiting for its WAL to reach
    the disk (PostgreSQL's ``synchronous_commit``, for this transaction only). A hold
    is a reservation that expires by itself: a database crash in the next fraction of
    a second can lose it, and then the trace is simply served again, to its holder or
    to someone else; no label is at stake (a submission commits synchronously). The
    wait it saves is one disk flush on every "next", the largest and most variable
    part of submit-and-next (``bench/annotation_latency.py``)."""
    params = {
        "project": project.pk,
        "trace": trace.pk,
        "user": user.pk,
        "now": now,
        "expires": now + timedelta(minutes=project.lock_minutes),
    }
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if database.has_transaction_settings():
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(_HOLD_SQL, params)


# Plain SQL on the path of every "next", as the queries below: the ORM's upsert cost
# more to build than to run.
_HOLD_SQL = """
INSERT INTO annotator_assignment (project_id, trace_id, annotator_id, claimed_at, expires_at,
  skipped)
VALUES (%(project)s, %(trace)s, %(user)s, %(now)s, %(expires)s, false)
ON CONFLICT (trace_id, annotator_id) DO UPDATE
SET claimed_at = excluded.claimed_at, expires_at = excluded.expires_at, skipped = false
"""


# The pieces of SQL that several statements here and in ``labelling`` share, written
# once. Parameters by name: %(user)s the annotator, %(now)s the time of the claim or
# submit.

# A live hold of ``annotator_assignment s``: claimed, not skipped, not expired.
LIVE_HOLD_SQL = "NOT s.skipped AND s.expires_at > %(now)s"


def others_holding_sql(trace: str) -> str:
    """How many other people hold the ``annotator_trace`` row ``trace`` (its alias) now."""
    return (
        "(SELECT count(*) FROM annotator_assignment s"
        f" WHERE s.trace_id = {trace}.id AND {LIVE_HOLD_SQL} AND s.annotator_id <> %(user)s)"
    )


def load_sql(trace: str) -> str:
    """The load of the ``annotator_trace`` row ``trace``: the labels that count
    (``label_count``) plus other people's live holds, which stays below N for a trace
    that has room."""
    return f"{trace}.label_count + {others_holding_sql(trace)}"


def latest_label_sql(trace_id: str) -> str:
    """The condition on ``annotator_annotation a`` for the user's current label of the
    trace ``trace_id`` (a column): ``Annotation.objects.latest_label_by`` in SQL."""
    return (
        f"a.trace_id = {trace_id} AND a.annotator_id = %(user)s"
        " AND a.kind = 'label' AND a.is_latest"
    )


# Traces the user neither labelled nor skipped, for ``annotator_trace t``: one EXISTS
# over both, so that it stays a filter on the queue's index scan, checked before the
# count of other people's holds (PostgreSQL orders a scan's filters by cost) and
# stopping at the first arm that finds a row. Written as two NOT EXISTS, the planner
# made them anti-joins above the scan, and every row passed over paid for the count.
_NEW_TO_USER_SQL = (
    f"NOT EXISTS (SELECT 1 FROM annotator_annotation a WHERE {latest_label_sql('t.id')}"
    " UNION ALL SELECT 1 FROM annotator_assignment s"
    " WHERE s.trace_id = t.id AND s.annotator_id = %(user)s AND s.skipped)"
)

# The two queries on every "next" are plain SQL: building them through the ORM cost
# more (about 5 ms each on a small CPU) than running them (well under 1 ms).
_HELD_SQL = f"""
SELECT s.trace_id FROM annotator_assignment s
WHERE s.project_id = %(project)s AND s.annotator_id = %(user)s AND {LIVE_HOLD_SQL}
  AND NOT EXISTS (SELECT 1 FROM annotator_annotation a WHERE {latest_label_sql("s.trace_id")})
ORDER BY s.claimed_at, s.id
LIMIT 1
"""

# Sampled solutions (a sampling run's traces) are served only from a run started with
# "add to the labelling queue": one probe of the sampled solution's unique trace index.
_QUEUED_SAMPLES_SQL = (
    "NOT EXISTS (SELECT 1 FROM annotator_sampledsolution ss"
    " JOIN annotator_samplingrun r ON r.id = ss.run_id"
    " WHERE ss.trace_id = t.id AND NOT r.labelling_queue)"
)

# Regular traces the user may be served, best first: room left (labels plus other
# people's live holds below N), not labelled or skipped by the user, not a sampled
# solution kept out of the queue. The trace_queue
# index gives the order, so PostgreSQL stops at the first row that passes.
#
# The user's own labels sit at the head of that order (breadth-first puts the traces
# they started, still short of N, first), so the walk passes over them. The check for
# the user's own label comes first and the count of other people's holds last, so a
# row passed over costs one index probe (``bench/annotation_latency.py --history``
# measures it; ``--explain`` prints the plan). A hashed NOT IN over the user's labels
# was tried and is slower: it reads all their labels on every claim.
_CANDIDATE_SQL = f"""
SELECT t.id FROM annotator_trace t
WHERE t.project_id = %(project)s AND NOT t.is_gold AND t.label_count < %(n)s
  AND (%(show_reference)s OR t.generator <> %(reference)s)
  AND {_NEW_TO_USER_SQL}
  AND {_QUEUED_SAMPLES_SQL}
  AND {load_sql("t")} < %(n)s
  {{passed_over}}
ORDER BY t.label_count DESC, t.queue_rank, t.id
LIMIT 1
{{lock}}
"""

_LOAD_SQL = f"SELECT {load_sql('t')} FROM annotator_trace t WHERE t.id = %(trace)s"

_PROBLEM_COLUMNS = [field.attname for field in Problem._meta.concrete_fields]

# The load as an expression on the trace row, to fetch the trace and its load at once.
# The ORM's raw SQL takes its parameters in order (%(now)s, then %(user)s).
_LOAD_EXPR = load_sql("annotator_trace") % {"now": "%s", "user": "%s"}

# The held trace, and whether the project has traces still to rank (a new import):
# one statement for what every "next" asks first.
_HELD_AND_UNRANKED_SQL = (
    "SELECT (" + _HELD_SQL + "), EXISTS (SELECT 1 FROM annotator_trace u"
    " WHERE u.project_id = %(project)s AND u.queue_rank IS NULL)"
)


def _locking(sql: str, passed_over: list[int] | None = None) -> str:
    """Fill in the row lock (PostgreSQL; SQLite, the single-writer demo database,
    serialises writers and has no row locks) and the ids already passed over."""
    lock = "FOR UPDATE OF t SKIP LOCKED" if database.has_skip_locked() else ""
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


_GOLD_SQL = f"""
SELECT t.id FROM annotator_trace t
WHERE t.project_id = %(project)s AND t.is_gold
  AND {_NEW_TO_USER_SQL}
ORDER BY t.queue_rank, t.id
LIMIT 1
{{lock}}
"""


def _claim_gold(project: Project, user, now: datetime) -> Trace | None:
    with transaction.atomic():
        trace_id = _one(_locking(_GOLD_SQL), {"project": project.pk, "user": user.pk})
        if trace_id is None:
            return None
        trace = Trace.objects.select_related("problem").get(pk=trace_id)
        _hold(project, trace, user, now)
        return trace


# The served trace with its load (the re-check below), its problem and its step texts,
# in one statement; plain SQL, as above: through the ORM (select_related, an
# ArraySubquery) the claim took 1.7 ms in this process against 0.8 ms.
_SERVED_SQL = f"""
SELECT t.*, {load_sql("t")} AS load,
  ARRAY(SELECT st.text FROM annotator_step st WHERE st.trace_id = t.id ORDER BY st.index)
    AS step_list,
  {", ".join(f"p.{c} AS problem__{c}" for c in _PROBLEM_COLUMNS)}
FROM annotator_trace t JOIN annotator_problem p ON p.id = t.problem_id
WHERE t.id = %(trace)s
"""


def _served(trace_id: int, user, now: datetime) -> Trace:
    """The trace with its problem, its ``load`` for ``user`` at ``now`` and, on
    PostgreSQL, its step texts, in one statement (SQLite, the demo, reads the steps when
    the page asks for them)."""
    if not database.has_arrays():
        traces = Trace.objects.select_related("problem")
        return traces.annotate(load=RawSQL(_LOAD_EXPR, [now, user.pk])).get(pk=trace_id)
    params = {"trace": trace_id, "user": user.pk, "now": now}
    trace = next(iter(Trace.objects.raw(_SERVED_SQL, params)))
    values = [getattr(trace, f"problem__{column}") for column in _PROBLEM_COLUMNS]
    trace.problem = Problem.from_db(trace._state.db, _PROBLEM_COLUMNS, values)
    trace.step_texts = trace.step_list  # fills the cached_property
    return trace


def candidate_params(project: Project, user, now: datetime) -> dict:
    """The parameters of ``_CANDIDATE_SQL`` (also for ``bench/annotation_latency.py
    --explain``)."""
    return {
        "project": project.pk,
        "user": user.pk,
        "now": now,
        "n": project.annotators_per_trace,
        # A project that hides reference answers never serves its reference solutions.
        "show_reference": project.show_reference_answer,
        "reference": REFERENCE_GENERATOR,
    }


def _claim_regular(project: Project, user, now: datetime) -> Trace | None:
    params = candidate_params(project, user, now)
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
            trace = _served(trace_id, user, now)
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
    if unranked or project.queue_ranked_as != rank_key(project):
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
        load = _one(_LOAD_SQL + (" FOR UPDATE" if database.has_row_locks() else ""), params)
        labelled = Annotation.objects.latest_label_by(user).filter(trace=trace).exists()
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
