"""A queued job whose broker message is lost (Redis restarted without persistence, as
compose runs it) is sent again by the sweeper and finished by a real worker, once.

The test runs a Redis of its own on a free port (the shared one is never restarted);
the app (``manage.py`` processes) and the worker use it as their broker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
import redis as redis_client
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from annotator.models import ImportJob, JobStatus, Trace
from tests.jobs.test_broker_down import free_port, start_redis
from tests.workers import ROOT, wait_for, worker_env

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

RECORD = json.dumps({"id": "lost-1", "problem": "1+1?", "steps": ["2"], "label": -1}).encode()


@pytest.fixture
def own_redis():
    """``{"port", "url", "process"}`` of a Redis that only this test uses; the test may
    replace ``process`` (a restart)."""
    port = free_port()
    state = {"port": port, "url": f"redis://127.0.0.1:{port}/0", "process": start_redis(port)}
    yield state
    state["process"].kill()
    state["process"].wait(timeout=30)


def manage(broker_url: str, *args: str) -> str:
    """Run ``manage.py`` with the app's broker at ``broker_url``; its standard output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=worker_env(CELERY_BROKER_URL=broker_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_job_whose_message_was_lost_is_sent_again_and_runs_once(
    own_redis, workers, project, users
):
    upload = default_storage.save("uploads/lost.jsonl", ContentFile(RECORD + b"\n"))
    job = ImportJob.objects.create(
        project=project, created_by=users["owner"], file_name="lost.jsonl", upload=upload
    )
    enqueue = f"from annotator import jobs, models; jobs.enqueue(models.ImportJob.objects.get(pk={job.pk}))"
    manage(own_redis["url"], "shell", "-c", enqueue)
    broker = redis_client.Redis(port=own_redis["port"])
    assert broker.llen("default") == 1

    # Redis restarted without persistence: the message is gone, the row still queued.
    own_redis["process"].kill()
    own_redis["process"].wait(timeout=30)
    own_redis["process"] = start_redis(own_redis["port"])
    assert broker.llen("default") == 0
    # The worker's own sweeper is off, so that the sweep below is the one that resends.
    workers(
        "after-restart", CELERY_BROKER_URL=own_redis["url"], STEPWISE_JOB_SWEEP_IN_WORKER="false"
    )
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    # A stale period has passed (the workers' is 3 s here), without the test sleeping it.
    ImportJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(minutes=5))

    assert "1 resent" in manage(own_redis["url"], "sweep_jobs")

    done = wait_for(lambda: (j := ImportJob.objects.get(pk=job.pk)).is_finished and j)
    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 1 and done.summary["traces"] == 1
    assert list(Trace.objects.filter(project=project).values_list("external_id", flat=True)) == [
        "lost-1"
    ]
    assert "0 resent" in manage(own_redis["url"], "sweep_jobs")  # a finished job is not sent
