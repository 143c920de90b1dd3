"""Score files uploaded through the runs page and the API are imported by a job
(``ScoreImportJob``) through the one reader (``scoring.formats.scores.iter_scores``): a
malformed file fails its job with the line named, never a 500, and nothing is stored.
Each case here answered 500, or was stored and broke a page later, before the upload
used that reader. An upload over the size cap is refused before it is read. The jobs
run in-process here (``jobs.execute``); tests/jobs/test_score_import_job.py runs them
on real workers."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from annotator import exporting, jobs, runs
from annotator.importing import import_file, import_traces
from annotator.models import JobStatus, Project, ScoreImportJob, ScoringRun, StepScore, Trace
from scoring.formats import ParsedTrace
from tests.factories import PROCESSBENCH_GSM8K, sqlite_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


@pytest.fixture
def api(users) -> APIClient:
    client = APIClient()
    client.force_authenticate(users["owner"])
    return client


def run_in_process(job_id: int) -> ScoreImportJob:
    """Run the queued job here, as a worker would, and return it finished."""
    jobs.execute(ScoreImportJob, job_id, runs.run_score_import_job)
    return ScoreImportJob.objects.get(pk=job_id)


def good_line(trace: Trace) -> bytes:
    return json.dumps({"id": trace.external_id, "scores": [0.5] * trace.num_steps}).encode()


def malformed(case: str, trace: Trace) -> bytes:
    """One record for ``trace``, right but for ``case``."""
    head = b'{"id": ' + json.dumps(trace.external_id).encode()
    scores = b", ".join([b"0.5"] * (trace.num_steps - 1))
    return {
        "huge-integer": head + b', "scores": [' + scores + b", 1" + b"0" * 5000 + b"]}",
        "huge-integer-in-details": head
        + b', "scores": ['
        + scores
        + b', 0.5], "details": {"n": 1'
        + b"0" * 30
        + b"}}",
        "nul-in-details": head
        + b', "scores": ['
        + scores
        + b', 0.5], "details": {"a": "\\u0000"}}',
        "lone-surrogate": head
        + b', "scores": ['
        + scores
        + b', 0.5], "details": {"a": "\\ud800"}}',
        "bad-utf8": head + b', "scores": [' + scores + b', 0.5], "model": "\xc3\x28"}',
        "deep-nesting": head
        + b', "scores": ['
        + scores
        + b', 0.5], "details": {"a": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}",
        "infinity": head + b', "scores": [' + scores + b", Infinity]}",
        "score-beyond-a-real": head + b', "scores": [' + scores + b", 1e39]}",
        "score-below-a-real": head + b', "scores": [' + scores + b", 1e-300]}",
        "n-tokens-beyond-int4": head
        + b', "scores": ['
        + scores
        + b', 0.5], "n_tokens": 3000000000}',
        "nan-in-details": head + b', "scores": [' + scores + b', 0.5], "details": {"p": NaN}}',
        "duplicate-id": good_line(trace) + b"\n" + good_line(trace),
    }[case]


CASES = [
    "huge-integer",
    "huge-integer-in-details",
    "nul-in-details",
    "lone-surrogate",
    "bad-utf8",
    "deep-nesting",
    "infinity",
    "score-beyond-a-real",
    "score-below-a-real",
    "n-tokens-beyond-int4",
    "nan-in-details",
    "duplicate-id",
]


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_score_file_through_the_page_fails_its_job_naming_the_line(
    gsm8k, client_for, users, case
):
    trace = Trace.objects.order_by("id").first()
    upload = SimpleUploadedFile("scores.jsonl", malformed(case, trace))
    client = client_for(users["owner"])
    response = client.post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "bad"}
    )
    job = ScoreImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("score-import", args=[gsm8k.slug, job.pk])

    job = run_in_process(job.pk)

    line = "2" if case == "duplicate-id" else "1"
    assert job.status == JobStatus.FAILED
    assert job.error.startswith(f"scores.jsonl, line {line}")
    assert job.error.endswith("Nothing was imported.") and not job.error_detail
    assert not ScoringRun.objects.exists()
    assert not default_storage.exists(job.upload)
    page = client.get(response["Location"])
    assert page.status_code == 200 and f"scores.jsonl, line {line}" in page.content.decode()


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_score_file_through_the_api_fails_its_job_naming_the_line(gsm8k, api, case):
    trace = Trace.objects.order_by("id").first()
    upload = SimpleUploadedFile("scores.jsonl", malformed(case, trace))
    response = api.post(
        reverse("api-runs-import", args=[gsm8k.slug]),
        {"file": upload, "name": "bad"},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["run"] is None

    run_in_process(response.json()["id"])

    followed = api.get(reverse("api-score-import", args=[gsm8k.slug, response.json()["id"]]))
    line = "2" if case == "duplicate-id" else "1"
    assert followed.json()["status"] == "failed"
    assert followed.json()["error"].startswith(f"scores.jsonl, line {line}")
    assert not ScoringRun.objects.exists()


def test_a_line_over_the_cap_is_refused_unread(gsm8k, client_for, users):
    trace = Trace.objects.order_by("id").first()
    padded = {"id": trace.external_id, "scores": [0.5] * trace.num_steps, "details": {}}
    body = json.dumps(padded).encode().replace(b"{}", b'{"pad": "' + b" " * (17 << 20) + b'"}')
    upload = SimpleUploadedFile("scores.jsonl", body)
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "long"}
    )
    assert response.status_code == 302
    job = run_in_process(ScoreImportJob.objects.get().pk)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("scores.jsonl, line 1: the line is longer than 16 MiB")
    assert not ScoringRun.objects.exists()


# About 8 KB, over the 4,000 bytes the tests below allow.
OVER_THE_CAP = b'{"id": "gsm8k-0", "scores": [0.5]}\n' * 250


def stored_uploads() -> list[str]:
    return default_storage.listdir("uploads")[1] if default_storage.exists("uploads") else []


def test_the_page_refuses_a_score_upload_over_the_size_cap(gsm8k, client_for, users, settings):
    settings.MAX_UPLOAD_BYTES = 4000
    before = stored_uploads()
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]),
        {"file": SimpleUploadedFile("big.jsonl", OVER_THE_CAP), "name": "big"},
    )
    assert response.status_code == 413
    assert b"may be uploaded (STEPWISE_MAX_UPLOAD_BYTES)" in response.content
    assert not ScoreImportJob.objects.exists() and not ScoringRun.objects.exists()
    assert stored_uploads() == before


def test_the_api_refuses_a_score_upload_over_the_size_cap(gsm8k, api, settings):
    settings.MAX_UPLOAD_BYTES = 4000
    before = stored_uploads()
    response = api.post(
        reverse("api-runs-import", args=[gsm8k.slug]),
        {"file": SimpleUploadedFile("big.jsonl", OVER_THE_CAP), "name": "big"},
        format="multipart",
    )
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    assert not ScoreImportJob.objects.exists() and not ScoringRun.objects.exists()
    assert stored_uploads() == before


def test_a_file_the_scorer_wrote_still_imports(gsm8k, client_for, users):
    """NaN scores (as ``json.dumps`` writes them), adapter, model, raw and details."""
    trace = Trace.objects.order_by("id").first()
    record = {
        "id": trace.external_id,
        "scores": [float("nan")] + [0.25] * (trace.num_steps - 1),
        "adapter": "arithmetic-check",
        "model": "m",
        "n_tokens": 12,
        "seconds": 0.5,
        "raw": [1.0] * trace.num_steps,
        "details": {"failed": ["2+2=5"]},
    }
    upload = SimpleUploadedFile("scores.jsonl", (json.dumps(record) + "\n").encode())
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "ok"}
    )
    assert response.status_code == 302
    job = run_in_process(ScoreImportJob.objects.get().pk)
    run = ScoringRun.objects.get()
    assert job.status == JobStatus.DONE and job.run == run
    assert run.provenance["adapter"] == "arithmetic-check" and run.provenance["model"] == "m"
    score = run.trace_scores.get()
    assert score.extras["failed"] == ["2+2=5"] and score.n_tokens == 12
    assert score.extras["raw"] == [1.0] * trace.num_steps


# A score file with null (and NaN) step scores imported on SQLite, the demo's database,
# then read back by each reader of step scores; printed as JSON (NaN spelt "nan").
NULL_SCORES_CHECK = """
import json
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from tests.annotator.test_score_files import import_null_scores
assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
print(json.dumps(import_null_scores(get_user_model().objects.create_user("owen"))))
"""


def import_null_scores(user) -> dict:
    """Import a trace, then a score file whose scores include null and NaN; what the
    readers of step scores give back, NaN spelt ``"nan"`` (JSON has none)."""

    def spelt(scores):
        return ["nan" if math.isnan(s) else s for s in scores]

    project = Project.objects.create(slug="nulls", name="Nulls")
    import_traces(
        project,
        [ParsedTrace(problem="1 + 1?", steps=["a", "b", "c", "d"], external_id="t1")],
        source="file",
        fmt="processbench",
    )
    line = b'{"id": "t1", "scores": [0.5, null, NaN, 0.25]}\n'
    run = runs.import_scores(project, io.BytesIO(line), "scores.jsonl", name="prm", user=user)
    trace = Trace.objects.get(project=project)
    (record,) = exporting.iter_export(project, "jsonl", score_runs=[run])
    score = run.trace_scores.get()
    return {
        "steps": spelt(
            StepScore.objects.filter(run=run).order_by("step_index").values_list("score", flat=True)
        ),
        "by trace": spelt(runs.scores_by_trace([run], trace)[run.pk]),
        "array": spelt(score.step_scores),
        "min": score.min_score,
        "export": record["step_scores"]["prm"],
    }


@pytest.mark.django_db(transaction=True)
def test_null_step_scores_import_on_sqlite_and_read_back_as_on_postgresql(
    tmp_path, sqlite_var, users
):
    env = sqlite_env(sqlite_var)
    child = subprocess.run(
        [sys.executable, "-c", NULL_SCORES_CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    on_sqlite = json.loads(child.stdout.splitlines()[-1])

    on_postgresql = import_null_scores(users["owner"])
    assert on_postgresql == {
        "steps": [0.5, "nan", "nan", 0.25],
        "by trace": [0.5, "nan", "nan", 0.25],
        "array": [0.5, "nan", "nan", 0.25],
        "min": 0.25,
        "export": [0.5, None, None, 0.25],
    }
    assert on_sqlite == on_postgresql
