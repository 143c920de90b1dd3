"""Runs split into shards that any worker takes: one run on many GPUs.

A run that works item by item (any ``ProjectRun`` kind whose work takes its items
through ``JobContext.restrict``: the traces of scoring and Monte-Carlo runs, the
problems of sampling and grounded (tree-search) runs, the sampled solutions of
verification runs; the kind's ``shard_unit`` names them) may be planned as shards when
it is created (``plan``): slices of its items by id, ``shard_traces`` each (the
name is the first kinds', whose items are traces; a ``Shard`` row's
``first_trace_id``, ``last_trace_id`` and ``traces`` likewise hold item ids and
counts). The run row keeps what the user sees and acts on (status, cancel flag, totals);
each ``Shard`` row follows the job rules of ``annotator/jobs.py``:

- **Messages**: enqueueing or retrying a sharded run sends its kind's task once per
  shard left (``messages_for``). A message names the run, not a shard: the worker
  that takes it claims the next shard there is, so every free worker on the run's
  queue works on it, and a message that finds nothing left to claim is dropped.
- **Claim** (``claim``): in one transaction, the first shard by index that is queued,
  or running with a stale heartbeat, with attempts left, locked ``FOR UPDATE SKIP
  LOCKED`` so that concurrent claimers pass over each other's row instead of waiting
  on it; it is marked running with ``attempts`` bumped. SQLite has no row locks and
  runs one writer at a time: there the conditional update alone decides. The first
  claim marks the run running.
- **Heartbeat**: the shard's own, conditional on ``attempts`` (a worker whose shard was
  taken over stops), which also keeps the run's ``heartbeat_at`` and progress (the
  sum of its shards') current.
- **Finish**: a shard done is marked done; the worker that finds no shard left runs
  the kind's ``finish`` (the run's summary) and marks the run done, under the run's
  row lock, so that only one does.
- **Sweep** (``sweep``, part of ``jobs.sweep``): a running shard whose heartbeat went
  stale goes back to the queue with a fresh message, or, its attempts spent, fails
  the run; a run with queued shards that no worker touched for a stale period gets
  their messages again (a broker restarted empty lost them), backing off while it
  stays idle.
- **Cancel** sets the run's flag (``jobs.cancel``); each worker stops its shard within
  a chunk and puts it back, and the last one to stop marks the run cancelled.
  **Retry** puts every unfinished shard back with fresh attempts; done shards stay
  done, and the traces a shard stored before it stopped are skipped when it runs again.

Workers share the database and the broker, nothing else: a worker loads its model
from its own hub cache or model directory and writes results to the database only.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotator import database, jobs
from annotator.models import Job, JobStatus, ProjectRun, Shard

log = logging.getLogger(__name__)

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

FinishFunction = Callable[[Any], dict[str, Any]]


def _content_type(model: type[Job]) -> ContentType:
    return ContentType.objects.get_for_model(model)


def shards_of(model: type[Job], run_id: int) -> QuerySet[Shard]:
    return Shard.objects.filter(content_type=_content_type(model), run_id=run_id)


def is_sharded(job: Job) -> bool:
    return isinstance(job, ProjectRun) and shards_of(type(job), job.pk).exists()


def check_size(shard_traces: int | None) -> int:
    """The shard size a new run asks for: ``RUN_SHARD_TRACES`` when None; 0 means one
    job. ``RunError`` for anything but a whole number from 0."""
    if shard_traces is None:
        return settings.RUN_SHARD_TRACES
    if isinstance(shard_traces, bool) or not isinstance(shard_traces, int) or shard_traces < 0:
        raise jobs.RunError("shard_traces must be a whole number, 0 for one job", "shard_traces")
    return shard_traces


def plan(run: ProjectRun, items: QuerySet, shard_traces: int) -> int:
    """Split ``items`` (what the run works on: its selected traces, problems or
    solutions) into shards of ``shard_traces`` by id, and return how many; the run's
    ``progress_total`` is their items. The ids are read in one pass, keeping only each
    shard's ends."""
    if shard_traces < 1:
        raise ValueError("shard_traces must be at least 1")
    content_type = _content_type(type(run))
    rows: list[Shard] = []
    first = last = count = 0
    ids = items.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=20_000)
    for item_id in ids:
        if count == 0:
            first = item_id
        last = item_id
        count += 1
        if count == shard_traces:
            rows.append(_planned(content_type, run, len(rows), first, last, count))
            count = 0
    if count:
        rows.append(_planned(content_type, run, len(rows), first, last, count))
    Shard.objects.bulk_create(rows, batch_size=2000)
    # heartbeat_at: the run's last activity, from which the sweeper's resends back off.
    type(run).objects.filter(pk=run.pk).update(
        progress_total=sum(row.traces for row in rows), heartbeat_at=timezone.now()
    )
    return len(rows)


def _planned(content_type, run, index: int, first: int, last: int, count: int) -> Shard:
    return Shard(
        content_type=content_type,
        run_id=run.pk,
        index=index,
        first_trace_id=first,
        last_trace_id=last,
        traces=count,
    )


def messages_for(job: Job) -> int:
    """How many messages start ``job``: one per shard left for a sharded run (each
    message takes one shard), otherwise one. A sharded run with every shard done gets
    one, whose worker finishes the run."""
    if not isinstance(job, ProjectRun):
        return 1
    return max(1, shards_of(type(job), job.pk).exclude(status=JobStatus.DONE).count())


# -- claiming -------------------------------------------------------------------------------


def claim(
    model: type[ProjectRun], run_id: int, worker: str, *, queued: bool = True
) -> Shard | None:
    """Take the run's next shard: queued, or running with a stale heartbeat (its worker
    died), with attempts left. None when the run is finished, cancelled or has nothing
    left to claim. ``queued``: the run may not have started yet (its first claim marks
    it running); False spares that update when the caller knows it has."""
    now = timezone.now()
    worker = worker[:200]
    if database.has_skip_locked():
        shard = _claim_skipping_locked(model, run_id, worker, now)
    else:
        shard = _claim_one_writer(model, run_id, worker, now)
    if shard is not None and queued:
        model.objects.filter(pk=run_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING,
            attempts=1,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            summary={"resumed_at": _done(model, run_id)},
        )
    return shard


def _claim_skipping_locked(
    model: type[ProjectRun], run_id: int, worker: str, now: datetime
) -> Shard | None:
    """The claim as one statement (one round trip, one commit): the queue idiom of
    ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``.
    The run's row is read in it for its status, cancel flag and attempts."""
    quote = connection.ops.quote_name
    content_type = _content_type(model)
    sql = f"""
        UPDATE {quote(Shard._meta.db_table)}
        SET status = %s, attempts = attempts + 1, heartbeat_at = %s, started_at = %s, worker = %s
        WHERE id = (
            SELECT s.id FROM {quote(Shard._meta.db_table)} s
            JOIN {quote(model._meta.db_table)} r ON r.id = s.run_id
            WHERE s.content_type_id = %s AND s.run_id = %s
              AND r.status IN (%s, %s) AND NOT r.cancel_requested
              AND s.attempts < r.max_attempts AND s.status IN (%s, %s)
              AND (s.status = %s OR (s.status = %s AND s.heartbeat_at < %s))
            ORDER BY s.index
            LIMIT 1
            FOR UPDATE OF s SKIP LOCKED
        )
        RETURNING id, index, first_trace_id, last_trace_id, traces, done, attempts"""
    params = [
        JobStatus.RUNNING,
        now,
        now,
        worker,
        content_type.pk,
        run_id,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        now - jobs.stale_after(),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    pk, index, first, last, traces, done, attempts = row
    return Shard(
        pk=pk,
        content_type=content_type,
        run_id=run_id,
        index=index,
        first_trace_id=first,
        last_trace_id=last,
        traces=traces,
        status=JobStatus.RUNNING,
        done=done,
        attempts=attempts,
        heartbeat_at=now,
        started_at=now,
        worker=worker,
    )


def _claim_one_writer(
    model: type[ProjectRun], run_id: int, worker: str, now: datetime
) -> Shard | None:
    """The claim without row locks (SQLite, which runs one writer at a time): the first
    claimable shard, taken by a conditional update that fails if another claimer got
    there first."""
    with transaction.atomic():
        run = (
            model.objects.filter(pk=run_id, status__in=ACTIVE, cancel_requested=False)
            .values("max_attempts")
            .first()
        )
        if run is None:
            return None
        claimable = (
            shards_of(model, run_id)
            .filter(attempts__lt=run["max_attempts"])
            .filter(
                Q(status=JobStatus.QUEUED)
                | Q(status=JobStatus.RUNNING, heartbeat_at__lt=now - jobs.stale_after())
            )
        )
        shard = claimable.order_by("index").first()
        if shard is None or not claimable.filter(pk=shard.pk).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            heartbeat_at=now,
            started_at=now,
            worker=worker,
        ):
            return None
    shard.status = JobStatus.RUNNING
    shard.attempts += 1
    shard.heartbeat_at = shard.started_at = now
    shard.worker = worker
    return shard


def _done(model: type[Job], run_id: int) -> int:
    return shards_of(model, run_id).aggregate(done=Coalesce(Sum("done"), 0))["done"]


def _advance_run(model: type[Job], run_id: int, traces: int) -> None:
    """The run is alive: its heartbeat, and its progress moved on by the ``traces`` a
    shard stored since it last said (an increment, not a sum over the run's shards:
    the workers of a large run would read every shard of it at every report)."""
    model.objects.filter(pk=run_id, status=JobStatus.RUNNING).update(
        heartbeat_at=timezone.now(), progress_done=F("progress_done") + traces
    )


class _ShardHeartbeat(jobs._Heartbeat):
    """A shard's heartbeat: the shard's row (conditional on its attempts, so a worker
    whose shard was taken over learns it), then the run's."""

    def __init__(self, model: type[ProjectRun], shard: Shard):
        threading.Thread.__init__(self, name=f"heartbeat-shard-{shard.pk}", daemon=True)
        self.model = Shard
        self.run_model = model
        self.run_id = shard.run_id
        self.pk = shard.pk
        self.attempt = shard.attempts
        self.done = shard.done
        self.reported = shard.done  # what the run's progress holds of this shard
        self.total = shard.traces
        self.lost = False
        self._stopping = threading.Event()

    def beat(self) -> None:
        done = self.done
        rows = Shard.objects.filter(
            pk=self.pk, status=JobStatus.RUNNING, attempts=self.attempt
        ).update(heartbeat_at=timezone.now(), done=done)
        if rows != 1:
            self.lost = True
            return
        _advance_run(self.run_model, self.run_id, done - self.reported)
        self.reported = done


class ShardContext(jobs.JobContext):
    """What the work of one shard sees: ``restrict`` narrows the run's items (traces,
    problems, solutions) to the shard's, ``progress`` counts within the shard, and ``check`` stops the work when the
    run was cancelled or has stopped (failed in another shard, retried, finished)."""

    def __init__(self, run: ProjectRun, shard: Shard, heartbeat: _ShardHeartbeat):
        super().__init__(run, heartbeat)
        self.shard = shard
        self.attempt = shard.attempts

    def restrict(self, items: QuerySet) -> QuerySet:
        return items.filter(pk__gte=self.shard.first_trace_id, pk__lte=self.shard.last_trace_id)

    def check(self) -> None:
        if self._heartbeat.lost:
            raise jobs.JobLost()
        status, cancel = (
            type(self.job)
            .objects.filter(pk=self.job.pk)
            .values_list("status", "cancel_requested")
            .get()
        )
        if cancel or status != JobStatus.RUNNING:
            raise jobs.JobCancelled()


# -- working --------------------------------------------------------------------------------


def execute(
    model: type[ProjectRun],
    run_id: int,
    work: jobs.WorkFunction,
    *,
    finish: FinishFunction,
    expected_errors: tuple[type[Exception], ...] = (jobs.JobRefused,),
) -> str | None:
    """The task of a run kind that may be sharded: ``jobs.execute`` for a run that is
    one job, otherwise claim one shard and run ``work(run, context)`` on it (a
    ``ShardContext``). ``finish(run)`` makes the run's summary once every shard is done
    (a whole job's ``work`` does that itself). Returns the shard's outcome, or None when
    there was no shard to take."""
    run = model.objects.filter(pk=run_id).first()
    shard = None
    if run is not None:
        queued = run.status == JobStatus.QUEUED
        shard = claim(model, run_id, jobs.worker_name(), queued=queued)
    if shard is None:
        if run is None or not is_sharded(run):
            return jobs.execute(model, run_id, work, expected_errors=expected_errors)
        log.info("%s %s: no shard left to take", model.__name__, run_id)
        _finish_run(model, run_id, finish)  # the last shard's worker died before finishing
        return None
    if shard.attempts > 1:
        log.warning(
            "%s %s: shard %s taken up again (attempt %s) after its worker stopped",
            model.__name__,
            run_id,
            shard.index,
            shard.attempts,
        )
    heartbeat = _ShardHeartbeat(model, shard)
    heartbeat.start()
    context = ShardContext(run, shard, heartbeat)
    try:
        work(run, context)
    except jobs.JobLost:
        log.warning("%s %s: shard %s was taken over; stopping", model.__name__, run_id, shard.index)
        return None
    except jobs.JobCancelled:
        _put_back(model, shard, heartbeat.done, heartbeat.reported)
        settle_cancel(model, run_id)
        return JobStatus.CANCELLED
    except expected_errors as exc:
        _fail(model, shard, heartbeat.done, str(exc))
        return JobStatus.FAILED
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            message = "It ran past its time limit and was stopped."
        else:
            log.exception("%s %s: shard %s failed", model.__name__, run_id, shard.index)
            message = f"Unexpected error: {type(exc).__name__}: {exc}"
        _fail(model, shard, heartbeat.done, message, jobs._traceback_summary(exc))
        return JobStatus.FAILED
    finally:
        heartbeat.stop()
    ours, maybe_last = _mark_done(model, shard, heartbeat.done, heartbeat.reported)
    if not ours:
        return None  # taken over between the last chunk and here: the other worker ends it
    if maybe_last:
        _finish_run(model, run_id, finish)
    return JobStatus.DONE


def _mark_done(
    model: type[ProjectRun], shard: Shard, done: int, reported: int
) -> tuple[bool, bool]:
    """Mark the shard done and the run touched (its heartbeat, its progress by what the
    shard stored since it last said), in one statement on PostgreSQL: a round trip is
    what a worker waits on. Returns whether the shard was still this worker's, and
    whether the run may be complete: no shard of it was waiting for a worker (then
    ``_finish_run`` looks, after the commit; before it, the workers of the last shards
    cannot see each other's)."""
    now = timezone.now()
    if not database.has_writable_cte():
        with transaction.atomic():
            if not Shard.objects.filter(
                pk=shard.pk, status=JobStatus.RUNNING, attempts=shard.attempts
            ).update(status=JobStatus.DONE, done=done, heartbeat_at=now, finished_at=now):
                return False, False
            _advance_run(model, shard.run_id, done - reported)
        return True, True
    quote = connection.ops.quote_name
    shard_table, run_table = quote(Shard._meta.db_table), quote(model._meta.db_table)
    # One statement: the shard marked done, then (only if it was) the run touched; and
    # whether a shard of the run still waits for a worker.
    sql = f"""
        WITH finished AS (
            UPDATE {shard_table} SET status = %(done_status)s, done = %(done)s,
                heartbeat_at = %(now)s, finished_at = %(now)s
            WHERE id = %(shard)s AND status = %(running)s AND attempts = %(attempts)s
            RETURNING id
        ), touched AS (
            UPDATE {run_table} SET heartbeat_at = %(now)s,
                progress_done = progress_done + %(advance)s
            WHERE id = %(run)s AND status = %(running)s AND EXISTS (SELECT 1 FROM finished)
            RETURNING id
        )
        SELECT (SELECT COUNT(*) FROM finished), (SELECT COUNT(*) FROM touched), EXISTS (
            SELECT 1 FROM {shard_table} s
            WHERE s.content_type_id = %(content_type)s AND s.run_id = %(run)s
              AND s.status = %(queued)s)"""
    params = {
        "done_status": JobStatus.DONE,
        "running": JobStatus.RUNNING,
        "queued": JobStatus.QUEUED,
        "done": done,
        "advance": done - reported,
        "now": now,
        "shard": shard.pk,
        "attempts": shard.attempts,
        "content_type": _content_type(model).pk,
        "run": shard.run_id,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        finished, _, waiting = cursor.fetchone()
    return bool(finished), not waiting


def _put_back(model: type[Job], shard: Shard, done: int, reported: int) -> None:
    """The shard back on the queue, what it stored kept (``done``, of which the run's
    progress holds ``reported``)."""
    if Shard.objects.filter(pk=shard.pk, status=JobStatus.RUNNING, attempts=shard.attempts).update(
        status=JobStatus.QUEUED, done=done, heartbeat_at=None
    ):
        _advance_run(model, shard.run_id, done - reported)


def _fail(model: type[ProjectRun], shard: Shard, done: int, message: str, detail: str = "") -> None:
    """The shard failed, so the run fails with its message; the workers on its other
    shards stop at their next check, and a retry takes up every shard not done."""
    Shard.objects.filter(pk=shard.pk, status=JobStatus.RUNNING, attempts=shard.attempts).update(
        status=JobStatus.FAILED, done=done, finished_at=timezone.now()
    )
    _fail_run(model, shard, message, detail)


def _fail_run(model: type[Job], shard: Shard, message: str, detail: str = "") -> None:
    unit = getattr(model, "shard_unit", "traces")
    where = f"Shard {shard.index + 1} ({unit} {shard.first_trace_id} to {shard.last_trace_id})"
    model.objects.filter(pk=shard.run_id, status__in=ACTIVE).update(
        status=JobStatus.FAILED,
        error=f"{where}: {message}",
        error_detail=detail,
        finished_at=timezone.now(),
        progress_done=_done(model, shard.run_id),
    )


def _finish_run(model: type[ProjectRun], run_id: int, finish: FinishFunction) -> None:
    """Mark the run done if every shard is: ``finish(run)`` makes its summary. Under
    the run's row lock, so that of two workers finishing the last shards together only
    one does it."""
    shards = shards_of(model, run_id)
    if shards.exclude(status=JobStatus.DONE).exists():
        return
    with transaction.atomic():
        run = model.objects.select_for_update().filter(pk=run_id, status=JobStatus.RUNNING).first()
        if run is None:  # finished by another worker, or stopped
            return
        run.progress_done = _done(model, run_id)
        try:
            summary = finish(run)
        except Exception as exc:
            log.exception("%s %s: finishing failed", model.__name__, run_id)
            fields = {
                "status": JobStatus.FAILED,
                "error": f"Unexpected error: {type(exc).__name__}: {exc}",
                "error_detail": jobs._traceback_summary(exc),
            }
        else:
            fields = {"status": JobStatus.DONE, "summary": {**summary, "shards": shards.count()}}
        model.objects.filter(pk=run_id).update(
            progress_done=run.progress_done, finished_at=timezone.now(), **fields
        )


# -- cancel, retry, sweep -------------------------------------------------------------------


def settle_cancel(model: type[Job], run_id: int) -> bool:
    """Mark a run whose cancel was asked for cancelled once none of its shards runs
    (a shard with a stale heartbeat has no worker); True if it did."""
    now = timezone.now()
    running = shards_of(model, run_id).filter(
        status=JobStatus.RUNNING, heartbeat_at__gte=now - jobs.stale_after()
    )
    if running.exists():
        return False
    return bool(
        model.objects.filter(pk=run_id, status__in=ACTIVE, cancel_requested=True).update(
            status=JobStatus.CANCELLED,
            error="Cancelled while running.",
            finished_at=now,
            progress_done=_done(model, run_id),
        )
    )


def reset(job: Job) -> None:
    """Put every unfinished shard of a run being retried back on the queue with fresh
    attempts (done shards stay done)."""
    if isinstance(job, ProjectRun) and shards_of(type(job), job.pk).exclude(
        status=JobStatus.DONE
    ).update(status=JobStatus.QUEUED, attempts=0, heartbeat_at=None, finished_at=None):
        type(job).objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())


def unsharded(model: type[Job], jobs_: QuerySet[Job]) -> QuerySet[Job]:
    """``jobs_`` without the sharded runs, whose rows the shard sweep looks after."""
    if not issubclass(model, ProjectRun):
        return jobs_
    sharded = Shard.objects.filter(content_type=_content_type(model)).values("run_id")
    return jobs_.exclude(pk__in=sharded)


def sweep(counts: Counter[str] | dict[str, int]) -> None:
    """Take up the shards of dead workers, and send again the messages of sharded runs
    that nothing has touched for a stale period (``jobs.sweep`` calls it)."""
    now = timezone.now()
    stale = now - jobs.stale_after()
    for pk in Shard.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale).values_list(
        "pk", flat=True
    )[:100]:
        counts[_sweep_shard(pk)] += 1
    for model in jobs.job_models():
        if not issubclass(model, ProjectRun):
            continue
        queued = Shard.objects.filter(
            content_type=_content_type(model), status=JobStatus.QUEUED
        ).values("run_id")
        for pk in model.objects.filter(
            status__in=ACTIVE, heartbeat_at__lt=stale, queued_at__lt=stale, pk__in=queued
        ).values_list("pk", flat=True)[:100]:
            counts[_resend(model, pk)] += 1


def _sweep_shard(pk: int) -> str:
    now = timezone.now()
    with transaction.atomic():
        shard = (
            Shard.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, status=JobStatus.RUNNING, heartbeat_at__lt=now - jobs.stale_after())
            .first()
        )
        if shard is None:  # finished, heartbeating again, or swept by another worker
            return "skipped"
        model = shard.content_type.model_class()
        run = model.objects.filter(pk=shard.run_id).first()
        if run is None or run.is_finished or run.cancel_requested:
            _put_back(model, shard, shard.done, shard.done)
            if run is not None and run.cancel_requested:
                transaction.on_commit(lambda: settle_cancel(model, shard.run_id))
                return "cancelled"
            return "skipped"
        if shard.attempts >= run.max_attempts:
            Shard.objects.filter(pk=pk).update(status=JobStatus.FAILED, finished_at=now)
            _fail_run(
                model,
                shard,
                f"its worker stopped (killed, out of memory or pre-empted) during each of its "
                f"{shard.attempts} attempts, so it was given up. The last worker was "
                f"{shard.worker or 'unknown'}.",
            )
            return "failed"
        _put_back(model, shard, shard.done, shard.done)
        # Inside the transaction: if the broker is down the shard stays running and stale,
        # and the next sweep tries again.
        jobs._send(run, copies=1)
    log.warning(
        "%s %s: shard %s lost its worker; queued again", model.__name__, run.pk, shard.index
    )
    return "requeued"


def _resend(model: type[ProjectRun], pk: int) -> str:
    """Send again the messages of a run's queued shards when no worker has touched the
    run (``heartbeat_at``: created, retried, a claim, a heartbeat, a shard done) for a
    stale period: a broker restarted empty lost them. Nothing tells that from every
    worker being busy elsewhere, where the messages still wait and each copy costs a
    claim that finds nothing; so the sends back off: again only after half the time the
    run has been idle (after 1, 2, 4, ... stale periods), not every period."""
    now = timezone.now()
    run = model.objects.filter(pk=pk, status__in=ACTIVE).first()
    if run is None or run.heartbeat_at is None or run.queued_at is None:
        return "skipped"
    wait = max(jobs.stale_after(), (now - run.heartbeat_at) / 2)
    if run.queued_at > now - wait:
        return "skipped"
    with transaction.atomic():
        # Conditional, so that of two sweepers only one sends.
        if not model.objects.filter(pk=pk, queued_at=run.queued_at).update(queued_at=now):
            return "skipped"
        copies = shards_of(model, pk).filter(status=JobStatus.QUEUED).count()
        # In the transaction: if the broker is down, queued_at rolls back and the next
        # sweep tries again.
        jobs._send(run, copies=copies)
    log.warning(
        "%s %s: shards waiting for a stale period; %s messages sent again",
        model.__name__,
        pk,
        copies,
    )
    return "resent"


# -- showing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    index: int
    host: str
    worker: str
    done: int
    traces: int


@dataclass(frozen=True)
class Overview:
    """A sharded run's shards for its page: how many are done, in flight (and where),
    and left; ``unit``: what a shard's counts count (the kind's ``shard_unit``)."""

    total: int
    done: int
    left: int
    in_flight: list[InFlight]
    hosts: dict[str, int]  # done shards by worker host
    unit: str


def overview(job: Job) -> Overview | None:
    """The run's shards, or None for a run that is one job."""
    if not isinstance(job, ProjectRun):
        return None
    rows = list(
        shards_of(type(job), job.pk).values_list("index", "status", "worker", "done", "traces")
    )
    if not rows:
        return None
    in_flight = [
        InFlight(index + 1, worker.rsplit(" pid ", 1)[0], worker, done, traces)
        for index, status, worker, done, traces in rows
        if status == JobStatus.RUNNING
    ]
    hosts = Counter(
        worker.rsplit(" pid ", 1)[0] for _, status, worker, _, _ in rows if status == JobStatus.DONE
    )
    done = sum(1 for row in rows if row[1] == JobStatus.DONE)
    return Overview(
        total=len(rows),
        done=done,
        left=len(rows) - done - len(in_flight),
        in_flight=in_flight,
        hosts=dict(sorted(hosts.items())),
        unit=job.shard_unit,
    )
