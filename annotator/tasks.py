"""Celery tasks: thin entry points that claim a job row, do the work, record the outcome."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from annotator.formats import ImportFormatError
from annotator.importing import import_file
from annotator.models import ImportJob, JobStatus

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def run_import(job_id: int) -> None:
    claimed = ImportJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        log.info("import job %s: another worker got there first, or it is finished", job_id)
        return
    job = ImportJob.objects.select_related("project").get(pk=job_id)

    # The import is one transaction, so progress written on its connection would stay
    # invisible until the end: write it through a second, autocommitting connection.
    progress_connection = connections.create_connection(DEFAULT_DB_ALIAS)
    table = ImportJob._meta.db_table

    def progress(done: int, total: int | None) -> None:
        with progress_connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET records_done = %s WHERE id = %s", [done, job_id])

    try:
        summary = import_file(
            job.project,
            job.path,
            job.format,
            split=job.options.get("split", ""),
            step_splitter=job.options.get("step_splitter", "paragraphs"),
            display_name=job.file_name,
            progress=progress,
        )
    except ImportFormatError as exc:
        _finish(job_id, JobStatus.FAILED, error=f"{exc}. Nothing was imported.")
    except Exception as exc:
        log.exception("import job %s failed", job_id)
        _finish(job_id, JobStatus.FAILED, error=f"Unexpected error: {exc}. Nothing was imported.")
        raise
    else:
        _finish(job_id, JobStatus.DONE, summary=summary.as_dict())
    finally:
        progress_connection.close()
        Path(job.path).unlink(missing_ok=True)


def _finish(job_id: int, status: str, *, error: str = "", summary: dict | None = None) -> None:
    ImportJob.objects.filter(pk=job_id).update(
        status=status,
        error=error,
        summary=summary or {},
        finished_at=timezone.now(),
    )
