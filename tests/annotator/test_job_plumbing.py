"""What every job kind shares, asked of all four at once: the access helper, the status
partial (one poll rate, the worker hint, no polling once finished), the task names and
limits, and the sweeper sending again a job whose broker message was lost."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

import pytest
from django.conf import settings
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from annotator import jobs
from annotator.celery import app
from annotator.models import (
    GroundedRun,
    ImportJob,
    JobStatus,
    Membership,
    MonteCarloRun,
    Project,
    Role,
    SamplingRun,
    ScoreImportJob,
    ScoringRun,
    TrainingRun,
    VerificationRun,
)

pytestmark = pytest.mark.django_db

POLLING = b'hx-trigger="every 1s"'

NAMES = (f"job-{n}" for n in count())

# Each kind: how to make a queued row of it, its page's URL name and partial name.
KINDS = {
    "import": (
        lambda project: ImportJob.objects.create(project=project, file_name="f.jsonl", upload=""),
        "import-job",
        "job-status",
    ),
    "scoring": (
        lambda project: ScoringRun.objects.create(project=project, name=next(NAMES), queue="gpu"),
        "run",
        "run-status",
    ),
    "montecarlo": (
        lambda project: MonteCarloRun.objects.create(
            project=project, name=next(NAMES), completer="openai:http://127.0.0.1:9/v1"
        ),
        "mc-run",
        "mc-run-status",
    ),
    "training": (
        lambda project: TrainingRun.objects.create(
            project=project, name=next(NAMES), kind="qwen-prm", base_model="b", queue="gpu"
        ),
        "training-run",
        "training-status",
    ),
}


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def other_project(users):
    other = Project.objects.create(slug="other", name="Other")
    Membership.objects.create(project=other, user=users["owner"], role=Role.OWNER)
    return other


@pytest.mark.parametrize("kind", KINDS)
def test_every_job_page_polls_at_one_rate_and_says_how_to_start_a_worker(
    kind, project, client_for, users
):
    make, page, partial_id = KINDS[kind]
    job = make(project)
    client = client_for(users["owner"])
    url = reverse(page, args=[project.slug, job.pk])

    type(job).objects.filter(pk=job.pk).update(queued_at=timezone.now())
    partial = client.get(url, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b"<html" not in partial.content
    assert f'id="{partial_id}"'.encode() in partial.content and POLLING in partial.content
    assert b"none has taken this job" not in partial.content

    type(job).objects.filter(pk=job.pk).update(queued_at=ago(30))
    partial = client.get(url, headers={"HX-Request": "true"})
    # 30 s and whatever the request itself took, on a loaded machine.
    waited = re.search(rb"none has taken this job for (\d+) s", partial.content)
    assert waited and 30 <= int(waited[1]) < 60, partial.content
    hint = b"celery -A annotator worker -Q gpu" if job.queue == "gpu" else b"make worker"
    assert hint in partial.content
    buttons = {"import": "import", "scoring": "run", "montecarlo": "mc", "training": "training"}
    assert f'id="{buttons[kind]}-cancel"'.encode() in partial.content

    type(job).objects.filter(pk=job.pk).update(status=JobStatus.DONE, finished_at=timezone.now())
    for headers in ({"HX-Request": "true"}, {}):
        finished = client.get(url, headers=headers)
        assert finished.status_code == 200 and b"hx-trigger" not in finished.content


def test_waiting_for_worker_is_a_queued_job_past_the_note_delay(project):
    job = ImportJob.objects.create(project=project, file_name="f", upload="", queued_at=ago(1))
    assert not job.waiting_for_worker
    job.queued_at = ago(job.WAITING_NOTE_SECONDS + 1)
    assert job.waiting_for_worker
    job.status = JobStatus.RUNNING
    assert not job.waiting_for_worker


@pytest.mark.parametrize("kind", KINDS)
def test_the_access_helper_answers_404_for_another_projects_job_and_for_outsiders(
    kind, project, other_project, users
):
    make = KINDS[kind][0]
    model = type(make(project))
    theirs = make(other_project)
    # The owner of both projects asks for the other project's job under this slug.
    with pytest.raises(Http404):
        jobs.get_job_for_user(users["owner"], project.slug, model, theirs.pk)
    membership, found = jobs.get_job_for_user(users["owner"], other_project.slug, model, theirs.pk)
    assert found == theirs and membership.project == other_project
    for role in ("reviewer", "outsider"):
        with pytest.raises(Http404):
            jobs.get_job_for_user(users[role], project.slug, model, make(project).pk)


def test_only_staff_owners_may_run_worker_jobs(project, users):
    owner = Membership.objects.get(project=project, user=users["owner"])
    reviewer = Membership.objects.get(project=project, user=users["reviewer"])
    assert not owner.may_run_worker_jobs()
    users["owner"].is_staff = users["reviewer"].is_staff = True
    users["owner"].save()
    users["reviewer"].save()
    owner = Membership.objects.get(pk=owner.pk)
    assert owner.may_run_worker_jobs()
    assert not Membership.objects.get(pk=reviewer.pk).may_run_worker_jobs()


def test_every_job_kind_names_a_task_declared_under_that_name_with_the_settings_limits():
    import annotator.tasks  # noqa: F401  (workers import it by autodiscovery)

    assert set(jobs.job_models()) == {
        ImportJob,
        ScoreImportJob,
        ScoringRun,
        MonteCarloRun,
        TrainingRun,
        GroundedRun,
        SamplingRun,
        VerificationRun,
    }
    for model in jobs.job_models():
        task = app.tasks[model.task_name]
        assert task.name == model.task_name
    margin = settings.CELERY_TASK_TIME_LIMIT - settings.CELERY_TASK_SOFT_TIME_LIMIT
    for name in ("run_import", "run_score_import"):
        imports = app.tasks[f"annotator.tasks.{name}"]
        assert imports.time_limit == settings.IMPORT_TIME_LIMIT
        assert imports.soft_time_limit == settings.IMPORT_TIME_LIMIT - margin
    for name in (
        "run_scoring",
        "run_montecarlo",
        "run_training",
        "run_grounded",
        "run_sampling",
        "run_verification",
    ):
        task = app.tasks[f"annotator.tasks.{name}"]
        assert task.time_limit == settings.CELERY_TASK_TIME_LIMIT
        assert task.soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT


def test_the_sweeper_sends_again_a_job_queued_for_a_stale_period(project, settings):
    settings.JOB_STALE_SECONDS = 60
    broker = app.connection_for_write().default_channel.client
    lost = ImportJob.objects.create(project=project, file_name="a", upload="", queued_at=ago(90))
    recent = ImportJob.objects.create(project=project, file_name="b", upload="", queued_at=ago(5))
    never_sent = ImportJob.objects.create(project=project, file_name="c", upload="")
    messages_before = broker.llen("default")

    counts = jobs.sweep()

    assert counts["resent"] == 1
    assert broker.llen("default") == messages_before + 1
    lost.refresh_from_db()
    assert lost.status == JobStatus.QUEUED and lost.queued_at > ago(5)
    assert ImportJob.objects.get(pk=recent.pk).queued_at < ago(4)
    assert ImportJob.objects.get(pk=never_sent.pk).queued_at is None
    # Sent once a stale period, not at every sweep.
    assert jobs.sweep()["resent"] == 0 and broker.llen("default") == messages_before + 1


def test_an_upload_is_kept_under_a_name_of_its_own_with_its_file_name():
    from django.core.files.storage import default_storage
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotator.models import UploadJob

    first = UploadJob.keep(SimpleUploadedFile("../dir/s.jsonl", b"one"))
    second = UploadJob.keep(SimpleUploadedFile("s.jsonl", b"two"))
    try:
        assert first["file_name"] == second["file_name"] == "s.jsonl"
        assert first["upload"] != second["upload"]
        assert first["upload"].startswith("uploads/") and first["upload"].endswith("-s.jsonl")
        with default_storage.open(first["upload"]) as fh:
            assert fh.read() == b"one"
    finally:
        default_storage.delete(first["upload"])
        default_storage.delete(second["upload"])
