"""The job rules on the database: who may claim, what the sweeper does with a dead
worker's job, cancel and retry. (Real workers and SIGKILL: tests/jobs/.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from annotator import jobs
from annotator.models import ImportJob, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_job(project, users):
    def make(**fields) -> ImportJob:
        name = default_storage.save("uploads/t.jsonl", ContentFile(b'{"problem": "p"}\n'))
        return ImportJob.objects.create(
            project=project, created_by=users["owner"], file_name="t.jsonl", upload=name, **fields
        )

    return make


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def test_it_claims_a_queued_job_once(make_job):
    job = make_job()
    claimed = jobs.claim(ImportJob, job.pk, "w1")
    assert claimed.status == JobStatus.RUNNING and claimed.attempts == 1
    assert claimed.worker == "w1" and claimed.heartbeat_at is not None
    assert jobs.claim(ImportJob, job.pk, "w2") is None


def test_it_takes_over_a_running_job_only_once_its_heartbeat_is_stale(make_job, settings):
    settings.JOB_STALE_SECONDS = 60
    job = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=ago(30))
    assert jobs.claim(ImportJob, job.pk, "w2") is None
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=ago(61))
    taken = jobs.claim(ImportJob, job.pk, "w2")
    assert taken.attempts == 2 and taken.worker == "w2"


def test_it_never_claims_a_job_out_of_attempts_or_finished(make_job, settings):
    settings.JOB_STALE_SECONDS = 60
    spent = make_job(status=JobStatus.RUNNING, attempts=3, max_attempts=3, heartbeat_at=ago(61))
    assert jobs.claim(ImportJob, spent.pk, "w") is None
    for status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED):
        assert jobs.claim(ImportJob, make_job(status=status).pk, "w") is None


def test_the_sweeper_requeues_fails_and_cancels_dead_workers_jobs(make_job, settings):
    settings.JOB_STALE_SECONDS = 60
    alive = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=ago(5))
    dead = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=ago(90), progress_done=7)
    spent = make_job(status=JobStatus.RUNNING, attempts=3, heartbeat_at=ago(90))
    stopping = make_job(
        status=JobStatus.RUNNING, attempts=1, heartbeat_at=ago(90), cancel_requested=True
    )

    counts = jobs.sweep()

    assert counts == {"requeued": 1, "failed": 1, "cancelled": 1, "resent": 0, "skipped": 0}
    for job in (alive, dead, spent, stopping):
        job.refresh_from_db()
    assert alive.status == JobStatus.RUNNING
    # Imports are all-or-nothing: one taken up again starts from zero.
    assert dead.status == JobStatus.QUEUED and dead.progress_done == 0 and dead.queued_at
    assert spent.status == JobStatus.FAILED and "during each of its 3 attempts" in spent.error
    assert stopping.status == JobStatus.CANCELLED
    assert default_storage.exists(dead.upload)


def test_a_lost_claim_stops_the_heartbeat_from_writing(make_job):
    job = jobs.claim(ImportJob, make_job().pk, "w1")
    heartbeat = jobs._Heartbeat(job)
    heartbeat.done = 5
    heartbeat.beat()
    assert not heartbeat.lost and ImportJob.objects.get(pk=job.pk).progress_done == 5
    ImportJob.objects.filter(pk=job.pk).update(attempts=2)  # another worker took it over
    heartbeat.done = 9
    heartbeat.beat()
    assert heartbeat.lost
    assert ImportJob.objects.get(pk=job.pk).progress_done == 5
    context = jobs.JobContext(job, heartbeat)
    with pytest.raises(jobs.JobLost):
        context.progress(10)


def test_a_cancel_reaches_the_work_at_its_next_progress_report(make_job):
    job = jobs.claim(ImportJob, make_job().pk, "w1")
    heartbeat = jobs._Heartbeat(job)
    context = jobs.JobContext(job, heartbeat)
    context.progress(1, 10)
    jobs.cancel(job)
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.RUNNING
    with pytest.raises(jobs.JobCancelled):
        context.progress(2)


def test_it_cancels_a_queued_job_at_once_from_the_page(make_job, client_for, users, project):
    job = make_job()
    response = client_for(users["owner"]).post(
        reverse("import-cancel", args=[project.slug, job.pk])
    )
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at


def test_it_retries_a_cancelled_job_from_the_api(make_job, client_for, users, project):
    job = make_job(status=JobStatus.CANCELLED, attempts=2, error="Cancelled.")
    response = client_for(users["owner"]).post(
        reverse("api-import-retry", args=[project.slug, job.pk])
    )
    assert response.status_code == 202
    job.refresh_from_db()
    assert (job.status, job.attempts, job.error) == (JobStatus.QUEUED, 0, "")


def test_it_refuses_to_retry_a_finished_or_running_job(make_job, client_for, users, project):
    client = client_for(users["owner"])
    for status in (JobStatus.DONE, JobStatus.RUNNING):
        job = make_job(status=status)
        response = client.post(reverse("api-import-retry", args=[project.slug, job.pk]))
        assert response.status_code == 409
        job.refresh_from_db()
        assert job.status == status


def test_it_checks_ownership_for_cancel_and_retry(make_job, client_for, users, project):
    job = make_job()
    for role in ("reviewer", "annotator", "outsider"):
        client = client_for(users[role])
        for name in ("import-cancel", "import-retry", "api-import-cancel", "api-import-retry"):
            response = client.post(reverse(name, args=[project.slug, job.pk]))
            assert response.status_code == 404, (role, name)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_a_get_never_cancels(make_job, client_for, users, project):
    job = make_job()
    response = client_for(users["owner"]).get(reverse("import-cancel", args=[project.slug, job.pk]))
    assert response.status_code == 405
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_the_job_page_says_when_no_worker_has_taken_the_job(make_job, client_for, users, project):
    client = client_for(users["owner"])
    job = make_job(queued_at=timezone.now())
    url = reverse("import-job", args=[project.slug, job.pk])
    page = client.get(url, headers={"HX-Request": "true"})
    assert b"none has taken this job" not in page.content
    assert b'hx-trigger="every 1s"' in page.content

    ImportJob.objects.filter(pk=job.pk).update(queued_at=ago(30))
    page = client.get(url, headers={"HX-Request": "true"})
    assert b"Waiting for a worker on queue <code>default</code>: none has taken this job" in (
        page.content
    )
