"""Background jobs that survive dead workers: enqueue, claim, heartbeat, cancel, retry.

Every job kind is a model built on ``models.Job``; its Celery task is one line that
calls ``execute`` with the work to do. The rules, in the order a job meets them:

- **Enqueue** commits the row, then sends the message. A broker that does not answer
  fails the job at once with a message saying so (``EnqueueError``): no row is left
  ``queued`` that no message will ever start.
- **Claim** is a conditional UPDATE that takes a queued job, or a running one whose
  heartbeat is stale (its worker died), and bumps ``attempts``. Exactly one worker
  wins; the others log "another worker got there first" and drop their message.
- **Heartbeat**: while the work runs, a thread writes ``heartbeat_at`` and progress
  every ``JOB_HEARTBEAT_SECONDS`` on its own connection (an import's writes are one
  transaction, invisible until the end). The update is
  conditional on ``attempts``, so a worker whose job was taken over notices and stops.
- **Sweep**: each worker's main process checks every ``JOB_STALE_SECONDS / 2`` for
  running jobs whose heartbeat went stale, which is what a SIGKILL, an out-of-memory
  kill or a pre-empted machine leaves behind. Such a job goes back to the queue with
  a fresh message (the dead worker's message may sit unacknowledged in the broker for
  the whole visibility timeout), or, once its attempts are spent, fails with a clear
  message. A job still queued a stale period after its message was sent is sent
  again: a broker restarted without persistence (as compose runs Redis) has lost it.
  A message sent twice is harmless: only one claim succeeds, and the other message
  is dropped. ``python manage.py sweep_jobs`` does the same from cron.
- **Cancel** is a flag the work reads between chunks (``JobContext.progress``); a
  queued job is cancelled at once. **Retry** puts a failed or cancelled job back.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from annotator.access import get_membership
from annotator.models import Job, JobStatus, Membership, Project, Trace, TraceQuerySet

log = logging.getLogger(__name__)


def job_models() -> list[type[Job]]:
    """Every job kind: the concrete subclasses of ``Job``, which the sweeper walks (a
    new kind is found here by being one)."""
    return [model for model in apps.get_models() if issubclass(model, Job)]


J = TypeVar("J", bound=Job)

BROKER_DOWN = (
    "The task queue (broker) did not answer, so the job was not queued. Try again once it is back."
)


class EnqueueError(RuntimeError):
    """The broker did not take the message; the job has been marked failed."""


class JobRefused(Exception):
    """The job's input is bad (a malformed file): it fails with this message, is not
    taken up again, and is not logged as a crash."""


class JobCancelled(Exception):
    """Raised inside the work when a user asked to cancel; the work's transaction rolls back."""


class JobLost(Exception):
    """Raised inside the work when another worker took the job over (this one was
    thought dead); the work stops without touching the row."""


class RunError(ValueError):
    """A job cannot start (a bad option, an empty selection, a name taken), or a file
    cannot be imported; the message says why. Pages and the API answer it with 400.
    ``field``: the request field (or option) at fault, where one is."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def get_job_for_user(
    user,
    slug: str,
    kind: type[J] | QuerySet[J],
    job_id: int,
    *,
    allow: Callable[[Membership], bool] = Membership.may_manage,
) -> tuple[Membership, J]:
    """The membership and the project's job ``job_id`` of ``kind`` (a job model, or
    a queryset of it to load related rows), or 404 for outsiders, members ``allow``
    refuses, and other projects' jobs, as for a job that does not exist.

    >>> membership, run = get_job_for_user(request.user, slug, ScoringRun, run_id)
    """
    membership = get_membership(user, slug, allow=allow)
    queryset = kind if isinstance(kind, QuerySet) else kind.objects.all()
    job = queryset.filter(project=membership.project, pk=job_id).first()
    if job is None:
        raise Http404("No such job")
    return membership, job


# -- which traces a run covers ---------------------------------------------------------------

SELECTION_KEYS = ("split", "generator", "source", "labelled", "ids")


def clean_selection(raw: dict[str, Any]) -> dict[str, Any]:
    """The selection with empty values dropped; ``RunError`` on unknown keys or bad ids."""
    unknown = sorted(set(raw) - set(SELECTION_KEYS))
    if unknown:
        raise RunError(f"unknown selection key(s) {unknown}; use {list(SELECTION_KEYS)}")
    selection = {k: v for k, v in raw.items() if v not in (None, "", [])}
    if selection.get("labelled") not in (None, "yes", "no"):
        raise RunError("labelled must be 'yes' or 'no'")
    if "ids" in selection:
        ids = selection["ids"]
        if isinstance(ids, str):
            ids = [part for part in re.split(r"[\s,]+", ids) if part]
        try:
            selection["ids"] = sorted({int(i) for i in ids})
        except (TypeError, ValueError):
            raise RunError("ids must be trace ids (whole numbers)") from None
    return selection


def selected_traces(project: Project, selection: dict[str, Any]) -> TraceQuerySet:
    """The project's traces a run with this selection covers. ``selection`` is cleaned
    (``clean_selection``), so its keys are ``TraceQuerySet.selected``'s, whose rule it is."""
    return Trace.objects.filter(project=project).selected(**selection)


# -- the job machinery ------------------------------------------------------------------------


def stale_after() -> timedelta:
    return timedelta(seconds=settings.JOB_STALE_SECONDS)


def worker_name() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _send(job: Job, copies: int | None = None) -> None:
    """Send the job's message: once, or ``copies`` times; by default once per shard left
    for a run split into shards, each message taking one (``shards.messages_for``)."""
    from annotator import shards
    from annotator.celery import app

    for _ in range(shards.messages_for(job) if copies is None else copies):
        app.send_task(
            job.task_name,
            args=[job.pk],
            queue=job.queue,
            retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY,
        )


def _update(job: Job, **fields: Any) -> int:
    return type(job).objects.filter(pk=job.pk).update(**fields)


def _broker_failed(job: Job, exc: BaseException) -> EnqueueError:
    log.warning("could not queue %s %s: %s", type(job).__name__, job.pk, exc)
    _update(
        job,
        status=JobStatus.FAILED,
        error=BROKER_DOWN,
        error_detail=f"{type(exc).__name__}: {exc}",
        finished_at=timezone.now(),
    )
    job.release_resources()
    job.refresh_from_db()
    return EnqueueError(BROKER_DOWN)


def enqueue(job: Job) -> Job:
    """Send a freshly created job to its queue, or fail it and raise ``EnqueueError``
    if the broker is down. Call it once the job row is committed (views run in
    autocommit): a worker that got the message first would find no job to claim."""
    _update(job, queued_at=timezone.now())
    try:
        _send(job)
    except Exception as exc:  # kombu and redis raise several kinds for "not reachable"
        raise _broker_failed(job, exc) from exc
    job.refresh_from_db()
    return job


def cancel(job: Job) -> Job:
    """Cancel a queued job now; ask a running one to stop at its next chunk (a run split
    into shards: every worker on it, and it is cancelled at once if none is)."""
    from annotator import shards

    now = timezone.now()
    model = type(job)
    if model.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, error="Cancelled before a worker took it.", finished_at=now
    ):
        log.info("%s %s cancelled while queued", model.__name__, job.pk)
    elif model.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        cancel_requested=True
    ) and shards.is_sharded(job):
        shards.settle_cancel(model, job.pk)
    job.refresh_from_db()
    return job


def retry(job: Job) -> Job:
    """Put a failed or cancelled job back on its queue with fresh attempts (for a run
    split into shards, every shard not done)."""
    from annotator import shards

    if not job.can_retry:
        raise ValueError(f"a {job.get_status_display().lower()} job cannot be retried")
    missing = job.missing_for_retry()
    if missing:
        raise ValueError(missing)
    reset = {} if job.resumable else {"progress_done": 0}
    updated = (
        type(job)
        .objects.filter(pk=job.pk, status__in=(JobStatus.FAILED, JobStatus.CANCELLED))
        .update(
            status=JobStatus.QUEUED,
            attempts=0,
            cancel_requested=False,
            error="",
            error_detail="",
            heartbeat_at=None,
            worker="",
            finished_at=None,
            queued_at=timezone.now(),
            **reset,
        )
    )
    if updated:
        shards.reset(job)
        try:
            _send(job)
        except Exception as exc:
            raise _broker_failed(job, exc) from exc
    job.refresh_from_db()
    return job


class JobContext:
    """What the work function sees: ``progress`` to report (and to learn of a cancel),
    the attempt number (2 or more: the job is being taken up again), and ``restrict``,
    the part of a run's traces it covers: all of them here, one shard's in a
    ``shards.ShardContext``."""

    shard = None  # the ``Shard`` being worked, in a ShardContext

    def __init__(self, job: Job, heartbeat: _Heartbeat, observer: ProgressObserver | None = None):
        self.job = job
        self.attempt = job.attempts
        self._heartbeat = heartbeat
        self._observer = observer

    def progress(self, done: int, total: int | None = None) -> None:
        """Record progress; raises ``JobCancelled`` or ``JobLost`` between chunks."""
        self._heartbeat.done = done
        if total is not None:
            self._heartbeat.total = total
        if self._observer:
            self._observer(done, self._heartbeat.total)
        self.check()

    def restrict(self, traces: TraceQuerySet) -> TraceQuerySet:
        """The traces of ``traces`` (a run's selection) this work covers."""
        return traces

    def check(self) -> None:
        """Stop here if the job was taken over or a cancel was asked for. The flag is
        read now (one small query), so a cancel stops the work within one chunk."""
        if self._heartbeat.lost:
            raise JobLost()
        model = type(self.job)
        if model.objects.filter(pk=self.job.pk).values_list("cancel_requested", flat=True).get():
            raise JobCancelled()


class _Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` and progress on this thread's own database connection."""

    def __init__(self, job: Job):
        super().__init__(name=f"heartbeat-{job.pk}", daemon=True)
        self.model = type(job)
        self.pk = job.pk
        self.attempt = job.attempts
        self.done = job.progress_done
        self.total = job.progress_total
        self.lost = False
        self._stopping = threading.Event()

    def beat(self) -> None:
        rows = self.model.objects.filter(
            pk=self.pk, status=JobStatus.RUNNING, attempts=self.attempt
        ).update(heartbeat_at=timezone.now(), progress_done=self.done, progress_total=self.total)
        if rows != 1:
            self.lost = True

    def run(self) -> None:
        try:
            while not self._stopping.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    self.beat()
                except Exception:  # a database blip must not kill the heartbeat for good
                    log.warning("heartbeat of job %s failed", self.pk, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def claim(model: type[Job], job_id: int, worker: str) -> Job | None:
    """Take the job if it is queued, or running with a stale heartbeat (its worker
    died) and has attempts left; None if another worker has it or it is finished."""
    now = timezone.now()
    claimable = Q(status=JobStatus.QUEUED) | Q(
        status=JobStatus.RUNNING, heartbeat_at__lt=now - stale_after()
    )
    claimed = (
        model.objects.filter(claimable, pk=job_id, cancel_requested=False)
        .filter(attempts__lt=F("max_attempts"))
        .update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            heartbeat_at=now,
            started_at=now,
            worker=worker[:200],
        )
    )
    if claimed != 1:
        return None
    return model.objects.get(pk=job_id)


WorkFunction = Callable[[Any, JobContext], dict[str, Any] | None]
ProgressObserver = Callable[[int, int | None], None]


def execute(
    model: type[Job],
    job_id: int,
    work: WorkFunction,
    *,
    expected_errors: tuple[type[Exception], ...] = (JobRefused,),
    observer: ProgressObserver | None = None,
) -> str | None:
    """Claim job ``job_id`` and run ``work(job, context)``; record the outcome on the row.

    ``work`` returns the summary to store (or None). An exception in
    ``expected_errors`` is the user's problem (a bad file): the job fails with its
    message and nothing is logged as a crash. Returns the final status, or None when
    the job was not ours to run. ``observer(done, total)`` sees every progress report
    (a command's progress bar when it runs a job in-process).
    """
    job = claim(model, job_id, worker_name())
    if job is None:
        log.info("%s %s: another worker got there first, or it is finished", model.__name__, job_id)
        return None
    if job.attempts > 1:
        log.warning(
            "%s %s: taken up again (attempt %s of %s) after its worker stopped",
            model.__name__,
            job_id,
            job.attempts,
            job.max_attempts,
        )
    heartbeat = _Heartbeat(job)
    heartbeat.start()
    context = JobContext(job, heartbeat, observer)
    outcome: dict[str, Any] = {}
    release = False
    try:
        summary = work(job, context)
    except JobLost:
        log.warning("%s %s: another worker took it over; stopping", model.__name__, job_id)
        return None
    except JobCancelled:
        outcome = {"status": JobStatus.CANCELLED, "error": "Cancelled while running."}
    except expected_errors as exc:
        outcome = {"status": JobStatus.FAILED, "error": str(exc)}
        release = True
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            message = "It ran past its time limit and was stopped."
        else:
            log.exception("%s %s failed", model.__name__, job_id)
            message = f"Unexpected error: {type(exc).__name__}: {exc}"
        outcome = {
            "status": JobStatus.FAILED,
            "error": message,
            "error_detail": _traceback_summary(exc),
        }
    else:
        outcome = {"status": JobStatus.DONE, "summary": summary or {}}
        release = True
    finally:
        heartbeat.stop()
    return _finish(job, heartbeat, outcome, release=release)


def _finish(job: Job, heartbeat: _Heartbeat, outcome: dict[str, Any], *, release: bool) -> str:
    fields = {
        "error": "",
        "error_detail": "",
        "finished_at": timezone.now(),
        "progress_done": heartbeat.done,
        "progress_total": heartbeat.total,
        **outcome,
    }
    finished = (
        type(job)
        .objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts)
        .update(**fields)
    )
    if finished and release:
        job.release_resources()
    return outcome["status"]


def _traceback_summary(exc: BaseException, frames: int = 6) -> str:
    lines = traceback.format_exception(exc, limit=-frames)
    return "".join(lines)[-4000:]


def sweep() -> dict[str, int]:
    """Take up the jobs of dead workers: requeue those with attempts left, fail the
    rest, and finish cancelling those whose worker died mid-cancel; send again the
    queued jobs whose message may be lost; the same for the shards of runs split into
    shards (``shards.sweep``). Returns counts."""
    from annotator import shards

    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "resent": 0, "skipped": 0}
    now = timezone.now()
    for model in job_models():
        stale = model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=now - stale_after())
        stale_ids = list(shards.unsharded(model, stale).values_list("pk", flat=True)[:100])
        for pk in stale_ids:
            counts[_sweep_one(model, pk)] += 1
        waiting = model.objects.filter(status=JobStatus.QUEUED, queued_at__lt=now - stale_after())
        waiting_ids = list(shards.unsharded(model, waiting).values_list("pk", flat=True)[:100])
        for pk in waiting_ids:
            counts[_resend_one(model, pk)] += 1
    shards.sweep(counts)
    return counts


def _resend_one(model: type[Job], pk: int) -> str:
    """Send a job queued for a stale period again. A broker restarted empty has lost
    its message, and nothing tells a lost message from one behind a long queue, so
    each such job is sent again once a stale period (``queued_at`` moves on): a
    backlog costs a few duplicate messages, each dropped by its failed claim."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional, so that of two sweepers only one sends (the second waits for the
        # first's row lock, then finds queued_at recent).
        resent = model.objects.filter(
            pk=pk, status=JobStatus.QUEUED, queued_at__lt=now - stale_after()
        ).update(queued_at=now)
        if not resent:  # taken by a worker, cancelled, or resent by another sweeper
            return "skipped"
        # Inside the transaction: if the broker is down, queued_at rolls back and the
        # next sweep tries again.
        _send(model.objects.get(pk=pk))
    log.warning("%s %s: queued for a stale period; its message sent again", model.__name__, pk)
    return "resent"


def _sweep_one(model: type[Job], pk: int) -> str:
    now = timezone.now()
    with transaction.atomic():
        job = (
            model.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, status=JobStatus.RUNNING, heartbeat_at__lt=now - stale_after())
            .first()
        )
        if job is None:  # finished, heartbeating again, or being swept by another worker
            return "skipped"
        if job.cancel_requested:
            _update(job, status=JobStatus.CANCELLED, error="Cancelled.", finished_at=now)
            return "cancelled"
        if job.attempts >= job.max_attempts:
            _update(
                job,
                status=JobStatus.FAILED,
                error=(
                    f"Its worker stopped (killed, out of memory or pre-empted) during each of "
                    f"its {job.attempts} attempts, so it was given up. The last worker was "
                    f"{job.worker or 'unknown'}."
                ),
                finished_at=now,
            )
            transaction.on_commit(job.release_resources)
            return "failed"
        reset = {} if job.resumable else {"progress_done": 0}
        _update(job, status=JobStatus.QUEUED, queued_at=now, worker="", **reset)
        # Inside the transaction: if the broker is down the requeue rolls back and the
        # next sweep tries again, so the job never sits queued without a message.
        _send(job)
    log.warning("%s %s: its worker stopped; queued again", model.__name__, pk)
    return "requeued"
