"""Imports uploaded through the UI run on a real Celery worker."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.models import ImportJob, Step, Trace
from tests.factories import PROCESSBENCH_GSM8K
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]


def finished(job_id: int) -> ImportJob | None:
    job = ImportJob.objects.get(pk=job_id)
    return job if job.is_finished else None


def test_an_uploaded_file_is_imported_by_the_worker(celery_worker, client_for, users, project):
    client = client_for(users["owner"])
    upload = SimpleUploadedFile("gsm8k.json", PROCESSBENCH_GSM8K.read_bytes())
    response = client.post(
        reverse("import", args=[project.slug]),
        {"file": upload, "format": "auto", "step_splitter": "paragraphs"},
    )
    job_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])

    job = wait_for(lambda: finished(job_id))
    assert job.status == "done", job.error
    assert job.summary["traces"] == 400 and job.summary["format"] == "processbench"
    assert job.progress_done == 400
    assert Trace.objects.filter(project=project).count() == 400
    assert Step.objects.count() == sum(
        len(r["steps"]) for r in json.loads(PROCESSBENCH_GSM8K.read_text())
    )
    page = client.get(
        reverse("import-job", args=[project.slug, job_id]), headers={"HX-Request": "true"}
    )
    assert b"400 traces" in page.content
    assert b"every 1s" not in page.content  # polling stops once the job is done


def test_a_bad_file_fails_with_its_line_and_writes_nothing(
    celery_worker, client_for, users, project
):
    good = json.dumps({"id": "a-1", "problem": "p", "steps": ["s"], "label": -1})
    bad = json.dumps({"id": "a-2", "problem": "p", "steps": ["s"], "label": 4})
    upload = SimpleUploadedFile("bad.jsonl", f"{good}\n{bad}\n".encode())
    response = client_for(users["owner"]).post(
        reverse("import", args=[project.slug]),
        {"file": upload, "format": "auto", "step_splitter": "paragraphs"},
    )
    job_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])

    job = wait_for(lambda: finished(job_id))
    assert job.status == "failed"
    assert "bad.jsonl, line 2, field 'label': 4 is out of range" in job.error
    assert "Nothing was imported" in job.error
    assert Trace.objects.count() == 0
