"""Score-file imports run on a real worker, as trace imports do: a file queued through
the API is imported to done; and with its worker SIGKILLed mid-file, a new worker
finishes the job with every trace scored once and nothing stored twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.models import (
    JobStatus,
    Problem,
    ScoreImportJob,
    ScoringRun,
    StepScore,
    Trace,
    TraceScore,
    text_hash,
)
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

# Enough lines that the fault test's import is still reading, or storing, when its
# worker is killed once it has reported progress.
TRACES = 60_000
STEPS = 8


@pytest.fixture
def score_file_for(project, tmp_path):
    """``score_file_for(n)``: ``n`` traces of ``STEPS`` steps in the project (without
    their step rows: a score import matches traces by external id and step count only),
    and the path of a score file with a line for each."""

    def make(n: int) -> Path:
        problem = Problem.objects.create(project=project, text="p", text_hash=text_hash("p"))
        same = {"project": project, "problem": problem, "source": "test", "source_format": "jsonl"}
        traces = (Trace(external_id=f"t{i}", num_steps=STEPS, **same) for i in range(n))
        Trace.objects.bulk_create(traces, batch_size=5000)
        path = tmp_path / "scores.jsonl"
        with path.open("w") as fh:
            for i in range(n):
                scores = [((i + step) % 10) / 10 for step in range(STEPS)]
                fh.write(json.dumps({"id": f"t{i}", "scores": scores}) + "\n")
        return path

    return make


def queue_import(client, project, path) -> int:
    response = client.post(
        reverse("api-runs-import", args=[project.slug]),
        {"file": SimpleUploadedFile(path.name, path.read_bytes()), "name": "from-file"},
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def job(job_id: int) -> ScoreImportJob:
    return ScoreImportJob.objects.get(pk=job_id)


def finished(job_id: int) -> ScoreImportJob | None:
    current = job(job_id)
    return current if current.is_finished else None


def assert_scored_once(done: ScoreImportJob, traces: int) -> None:
    run = ScoringRun.objects.get()
    assert done.run == run and run.name == "from-file" and run.source == "imported"
    assert done.summary["traces"] == traces and done.summary["run"] == run.pk
    assert TraceScore.objects.filter(run=run).count() == traces
    assert TraceScore.objects.filter(run=run).values("trace").distinct().count() == traces
    assert StepScore.objects.filter(run=run).count() == traces * STEPS
    assert not default_storage.exists(done.upload)


def test_a_score_import_runs_to_done_on_a_worker(
    workers, client_for, users, project, score_file_for
):
    path = score_file_for(500)
    client = client_for(users["owner"])
    workers("one")
    job_id = queue_import(client, project, path)

    done = wait_for(lambda: finished(job_id), timeout=120)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 1
    assert_scored_once(done, 500)
    page = client.get(
        reverse("score-import", args=[project.slug, job_id]), headers={"HX-Request": "true"}
    )
    assert b"hx-trigger" not in page.content
    assert reverse("run", args=[project.slug, done.run_id]).encode() in page.content


def test_a_killed_worker_s_score_import_is_finished_by_a_new_worker(
    workers, client_for, users, project, score_file_for
):
    path = score_file_for(TRACES)
    client = client_for(users["owner"])
    first = workers("first")
    job_id = queue_import(client, project, path)
    wait_for(lambda: job(job_id).progress_done > 0)
    first.kill()  # the whole worker, as a crashed or pre-empted machine
    assert job(job_id).status == JobStatus.RUNNING  # left behind, heartbeat going stale
    assert not ScoringRun.objects.exists()  # the dead worker's transaction rolled back

    workers("second")
    done = wait_for(lambda: finished(job_id), timeout=180)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert_scored_once(done, TRACES)
