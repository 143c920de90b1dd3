"""Jobs survive dead workers: SIGKILL a whole worker or one pool child mid-import, and
another worker finishes the job exactly once, or fails it clearly once its attempts
are spent. Concurrent imports of one file both finish; cancel and retry work."""

from __future__ import annotations

import json
import os
import signal

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.models import ImportJob, JobStatus, Problem, Step, Trace, text_hash
from tests.factories import PROCESSBENCH_GSM8K
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

RECORDS = 50_000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """50k ProcessBench records (the 400 real ones, renumbered), as JSONL."""
    base = json.loads(PROCESSBENCH_GSM8K.read_text())
    path = tmp_path_factory.mktemp("big") / "gsm8k-50k.jsonl"
    steps = 0
    with path.open("w") as fh:
        for i in range(RECORDS):
            record = dict(base[i % len(base)], id=f"gsm8k-{i}")
            steps += len(record["steps"])
            fh.write(json.dumps(record) + "\n")
    return path, steps


def upload(client, project, path, **extra):
    """POST the file to the API and return the job id."""
    with path.open("rb") as fh:
        response = client.post(
            reverse("api-import", args=[project.slug]),
            {"file": SimpleUploadedFile(path.name, fh.read()), "format": "auto", **extra},
        )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def job(job_id: int) -> ImportJob:
    return ImportJob.objects.get(pk=job_id)


def started(job_id: int) -> bool:
    return job(job_id).progress_done > 0


def finished(job_id: int) -> ImportJob | None:
    current = job(job_id)
    return current if current.is_finished else None


def assert_imported_once(project, steps: int) -> None:
    assert Trace.objects.filter(project=project).count() == RECORDS
    assert Step.objects.filter(trace__project=project).count() == steps
    problems = {text_hash(r["problem"]) for r in json.loads(PROCESSBENCH_GSM8K.read_text())}
    assert Problem.objects.filter(project=project).count() == len(problems)


def assert_page_stopped_polling(client, project, job_id: int) -> bytes:
    page = client.get(
        reverse("import-job", args=[project.slug, job_id]), headers={"HX-Request": "true"}
    )
    assert page.status_code == 200
    assert b"hx-trigger" not in page.content
    return page.content


def test_a_killed_worker_s_import_is_finished_by_a_new_worker(
    workers, client_for, users, project, big_file
):
    path, steps = big_file
    client = client_for(users["owner"])
    first = workers("first")
    job_id = upload(client, project, path)
    wait_for(lambda: started(job_id))
    first.kill()  # the whole worker, as a crashed or pre-empted machine
    assert job(job_id).status == JobStatus.RUNNING  # left behind, heartbeat going stale

    workers("second")
    done = wait_for(lambda: finished(job_id), timeout=180)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert done.summary["traces"] == RECORDS and done.summary["skipped_duplicates"] == 0
    assert done.progress_done == RECORDS
    assert_imported_once(project, steps)
    assert not default_storage.exists(done.upload)
    assert b"50000 traces" in assert_page_stopped_polling(client, project, job_id)


def test_a_killed_pool_child_s_import_is_finished_by_its_worker(
    workers, client_for, users, project, big_file
):
    path, steps = big_file
    client = client_for(users["owner"])
    worker = workers("survivor")
    job_id = upload(client, project, path)
    wait_for(lambda: started(job_id))
    (child,) = worker.pool_children()
    os.kill(child, signal.SIGKILL)

    done = wait_for(lambda: finished(job_id), timeout=180)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert_imported_once(project, steps)
    assert not default_storage.exists(done.upload)
    assert_page_stopped_polling(client, project, job_id)


def test_an_import_whose_worker_dies_on_its_last_attempt_fails_clearly(
    workers, client_for, users, project, big_file, settings
):
    settings.JOB_MAX_ATTEMPTS = 1
    path, _ = big_file
    client = client_for(users["owner"])
    first = workers("first")
    job_id = upload(client, project, path)
    wait_for(lambda: started(job_id))
    first.kill()

    workers("second")
    failed = wait_for(lambda: finished(job_id), timeout=60)

    assert failed.status == JobStatus.FAILED
    assert "Its worker stopped" in failed.error and "1 attempts" in failed.error
    assert Trace.objects.filter(project=project).count() == 0
    assert not default_storage.exists(failed.upload)
    assert b"Its worker stopped" in assert_page_stopped_polling(client, project, job_id)


def test_two_concurrent_imports_of_one_file_both_finish_with_every_row_once(
    workers, client_for, users, project, big_file
):
    path, steps = big_file
    client = client_for(users["owner"])
    workers("one")
    workers("two")
    first = upload(client, project, path)
    second = upload(client, project, path)

    jobs = [wait_for(lambda j=j: finished(j), timeout=180) for j in (first, second)]

    assert [j.status for j in jobs] == [JobStatus.DONE, JobStatus.DONE], [j.error for j in jobs]
    assert sorted(j.summary["traces"] for j in jobs) == [0, RECORDS]
    assert sorted(j.summary["skipped_duplicates"] for j in jobs) == [0, RECORDS]
    assert_imported_once(project, steps)


def test_cancel_stops_a_running_import_and_retry_completes_it(
    workers, client_for, users, project, big_file
):
    path, steps = big_file
    client = client_for(users["owner"])
    workers("only")
    job_id = upload(client, project, path)
    wait_for(lambda: started(job_id))

    response = client.post(reverse("import-cancel", args=[project.slug, job_id]))
    assert response.status_code == 302
    cancelled = wait_for(lambda: finished(job_id))
    assert cancelled.status == JobStatus.CANCELLED
    assert Trace.objects.filter(project=project).count() == 0  # its transaction rolled back
    assert b"Retry" in assert_page_stopped_polling(client, project, job_id)

    response = client.post(reverse("api-import-retry", args=[project.slug, job_id]))
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["attempts"] == 0
    done = wait_for(lambda: finished(job_id), timeout=180)
    assert done.status == JobStatus.DONE, done.error
    assert_imported_once(project, steps)
