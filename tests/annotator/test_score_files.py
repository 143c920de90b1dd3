"""Score files uploaded through the runs page and the API go through the one reader
(``scoring.formats.scores.iter_scores``): a malformed file answers 400 naming its line,
never 500, and nothing is stored. Each case here answered 500, or was stored and broke
a page later, before the upload used that reader."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from annotator.importing import import_file
from annotator.models import ScoringRun, Trace
from tests.factories import PROCESSBENCH_GSM8K


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


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
def test_the_import_page_refuses_a_malformed_score_file(gsm8k, client_for, users, case):
    trace = Trace.objects.order_by("id").first()
    upload = SimpleUploadedFile("scores.jsonl", malformed(case, trace))
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "bad"}
    )
    assert response.status_code == 400
    line = "2" if case == "duplicate-id" else "1"
    assert f"scores.jsonl, line {line}" in response.content.decode()
    assert not ScoringRun.objects.exists()


@pytest.mark.parametrize("case", CASES)
def test_the_import_api_refuses_a_malformed_score_file(gsm8k, users, case):
    trace = Trace.objects.order_by("id").first()
    client = APIClient()
    client.force_authenticate(users["owner"])
    upload = SimpleUploadedFile("scores.jsonl", malformed(case, trace))
    response = client.post(
        f"/api/v1/projects/{gsm8k.slug}/runs/import/",
        {"file": upload, "name": "bad"},
        format="multipart",
    )
    assert response.status_code == 400
    line = "2" if case == "duplicate-id" else "1"
    assert response.json()["detail"].startswith(f"scores.jsonl, line {line}")
    assert not ScoringRun.objects.exists()


def test_a_line_over_the_cap_is_refused_unread(gsm8k, client_for, users):
    trace = Trace.objects.order_by("id").first()
    padded = {"id": trace.external_id, "scores": [0.5] * trace.num_steps, "details": {}}
    body = json.dumps(padded).encode().replace(b"{}", b'{"pad": "' + b" " * (17 << 20) + b'"}')
    upload = SimpleUploadedFile("scores.jsonl", body)
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "long"}
    )
    assert response.status_code == 400
    assert "scores.jsonl, line 1: the line is longer than 16 MiB" in response.content.decode()
    assert not ScoringRun.objects.exists()


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
    run = ScoringRun.objects.get()
    assert run.provenance["adapter"] == "arithmetic-check" and run.provenance["model"] == "m"
    score = run.trace_scores.get()
    assert score.extras["failed"] == ["2+2=5"] and score.n_tokens == 12
    assert score.extras["raw"] == [1.0] * trace.num_steps
