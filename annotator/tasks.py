"""Celery tasks: thin entry points. Each one hands its job row to ``jobs.execute``,
which claims it, heartbeats, and records the outcome (``annotator/jobs.py``)."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

from annotator import jobs
from annotator.importing import run_import_job
from annotator.models import ImportJob, ScoringRun
from annotator.runs import run_scoring_job

log = logging.getLogger(__name__)


@shared_task(
    time_limit=settings.IMPORT_TIME_LIMIT,
    soft_time_limit=settings.IMPORT_TIME_LIMIT - 30,
)
def run_import(job_id: int) -> None:
    jobs.execute(ImportJob, job_id, run_import_job)


@shared_task(
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_TIME_LIMIT - 60,
)
def run_scoring(run_id: int) -> None:
    jobs.execute(ScoringRun, run_id, run_scoring_job)


@shared_task(
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_TIME_LIMIT - 60,
)
def run_montecarlo(run_id: int) -> None:
    from annotator.models import MonteCarloRun
    from annotator.montecarlo import run_montecarlo_job

    jobs.execute(MonteCarloRun, run_id, run_montecarlo_job)


@shared_task(
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_TIME_LIMIT - 60,
)
def run_training(run_id: int) -> None:
    from annotator.models import TrainingRun
    from annotator.training import run_training_job

    jobs.execute(TrainingRun, run_id, run_training_job)


@shared_task(time_limit=120)
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
                if any(counts[k] for k in ("requeued", "failed", "cancelled")):
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
