"""Celery tasks: thin entry points, one line per job kind. Each hands its job row to
``jobs.execute``, which claims it, heartbeats, and records the outcome
(``annotator/jobs.py``); a run kind that may be split into shards goes through
``shards.execute``, which does the same for the next shard of the run.

Names are explicit: a job row names its task (``Job.task_name``) and messages carry
the name, so renaming a function must not orphan the messages already queued. Time
limits come from settings: ``CELERY_TASK_TIME_LIMIT`` and ``CELERY_TASK_SOFT_TIME_LIMIT``
for every task, ``IMPORT_TIME_LIMIT`` for imports of traces and of scores (they run on
the CPU queue beside other work, so they get less).
"""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

from annotator import jobs, shards
from annotator.grounded import finish_grounded_run, run_grounded_job
from annotator.importing import run_import_job
from annotator.models import (
    GroundedRun,
    ImportJob,
    MonteCarloRun,
    SamplingRun,
    ScoreImportJob,
    ScoringRun,
    TrainingRun,
    VerificationRun,
)
from annotator.montecarlo import finish_mc_run, run_montecarlo_job
from annotator.runs import finish_run, run_score_import_job, run_scoring_job
from annotator.sampling import finish_sampling_run, run_sampling_job
from annotator.training import run_training_job
from annotator.verification import finish_verification_run, run_verification_job

log = logging.getLogger(__name__)

# The soft limit raises SoftTimeLimitExceeded inside the work a minute before the hard
# one kills it, so the job is marked failed with a message instead of lost.
SOFT_LIMIT_MARGIN = settings.CELERY_TASK_TIME_LIMIT - settings.CELERY_TASK_SOFT_TIME_LIMIT
IMPORT_LIMITS = {
    "time_limit": settings.IMPORT_TIME_LIMIT,
    "soft_time_limit": settings.IMPORT_TIME_LIMIT - SOFT_LIMIT_MARGIN,
}


@shared_task(name="annotator.tasks.run_import", **IMPORT_LIMITS)
def run_import(job_id: int) -> None:
    jobs.execute(ImportJob, job_id, run_import_job)


@shared_task(name="annotator.tasks.run_score_import", **IMPORT_LIMITS)
def run_score_import(job_id: int) -> None:
    jobs.execute(ScoreImportJob, job_id, run_score_import_job)


@shared_task(name="annotator.tasks.run_scoring")
def run_scoring(run_id: int) -> None:
    shards.execute(ScoringRun, run_id, run_scoring_job, finish=finish_run)


@shared_task(name="annotator.tasks.run_montecarlo")
def run_montecarlo(run_id: int) -> None:
    shards.execute(MonteCarloRun, run_id, run_montecarlo_job, finish=finish_mc_run)


@shared_task(name="annotator.tasks.run_grounded")
def run_grounded(run_id: int) -> None:
    shards.execute(GroundedRun, run_id, run_grounded_job, finish=finish_grounded_run)


@shared_task(name="annotator.tasks.run_training")
def run_training(run_id: int) -> None:
    jobs.execute(TrainingRun, run_id, run_training_job)


@shared_task(name="annotator.tasks.run_sampling")
def run_sampling(run_id: int) -> None:
    shards.execute(SamplingRun, run_id, run_sampling_job, finish=finish_sampling_run)


@shared_task(name="annotator.tasks.run_verification")
def run_verification(run_id: int) -> None:
    shards.execute(VerificationRun, run_id, run_verification_job, finish=finish_verification_run)


@shared_task(name="annotator.tasks.sweep_jobs", time_limit=120)
def sweep_jobs() -> dict[str, int]:
    return jobs.sweep()


class _Sweeper(threading.Thread):
    """Runs ``jobs.sweep`` in the worker's main process every half stale period, so
    the jobs of a worker that died are taken up by the others (or by its own
    replacement) without a separate beat process."""

    def __init__(self) -> None:
        super().__init__(name="job-sweeper", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = settings.JOB_STALE_SECONDS / 2
        while True:
            try:
                counts = jobs.sweep()
                if any(counts[k] for k in ("requeued", "failed", "cancelled", "resent")):
                    log.warning("job sweep: %s", counts)
            except Exception:
                log.warning("job sweep failed; trying again later", exc_info=True)
            finally:
                # No connection stays open between sweeps, so none is inherited by a
                # pool child forked in between.
                connection.close()
                close_old_connections()
            if self.stopping.wait(interval):
                return


_sweeper: _Sweeper | None = None


@worker_ready.connect
def _start_sweeper(**_: object) -> None:
    global _sweeper
    if settings.JOB_SWEEP_IN_WORKER and _sweeper is None:
        _sweeper = _Sweeper()
        _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_: object) -> None:
    if _sweeper is not None:
        _sweeper.stopping.set()
