"""The sampling- and verification-run API: staff owners start runs with the pages' rules,
members who see model scores follow them, owners cancel and retry, outsiders see nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotator.models import JobStatus, SamplingRun, VerificationRun
from tests.factories import make_trace, solved_runs

pytestmark = pytest.mark.django_db

SERVER = "openai:http://127.0.0.1:9/v1"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_runs_are_started_followed_cancelled_and_retried(project, users) -> None:
    make_trace(project, reference_answer="4")
    base = f"/api/v1/projects/{project.slug}"
    body = {
        "completer": SERVER,
        "model": "m",
        "n": 4,
        "options": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64},
        "name": "api-run",
    }
    assert (
        api(users["owner"]).post(f"{base}/sampling-runs/", body, format="json").status_code == 403
    )
    users["owner"].is_staff = True
    users["owner"].save()
    owner = api(users["owner"])
    missing = {**body, "options": {"temperature": 0.7}}
    refused = owner.post(f"{base}/sampling-runs/", missing, format="json")
    assert refused.status_code == 400 and "top_p" in refused.json()["detail"]
    started = owner.post(f"{base}/sampling-runs/", body, format="json")
    assert started.status_code == 202, started.json()
    run = SamplingRun.objects.get(name="api-run")
    assert started.json()["status"] == JobStatus.QUEUED and started.json()["id"] == run.pk
    assert started.json()["labelling_queue"] is False and not run.labelling_queue
    queued = owner.post(
        f"{base}/sampling-runs/",
        {**body, "name": "api-queued", "labelling_queue": True},
        format="json",
    )
    assert queued.status_code == 202 and queued.json()["labelling_queue"] is True
    assert SamplingRun.objects.get(name="api-queued").labelling_queue

    listed = api(users["reviewer"]).get(f"{base}/sampling-runs/").json()
    assert sorted(r["name"] for r in listed) == ["api-queued", "api-run"]
    assert api(users["annotator"]).get(f"{base}/sampling-runs/").status_code == 404
    assert api(users["outsider"]).get(f"{base}/sampling-runs/{run.pk}/").status_code == 404
    assert api(users["reviewer"]).post(f"{base}/sampling-runs/{run.pk}/cancel/").status_code == 404
    assert owner.post(f"{base}/sampling-runs/{run.pk}/cancel/").json()["status"] == "cancelled"
    assert owner.post(f"{base}/sampling-runs/{run.pk}/retry/").status_code == 202

    early = {"sampling_run": run.name, "completer": SERVER, "model": "m", "v": 3}
    refused = owner.post(f"{base}/verification-runs/", early, format="json")
    assert refused.status_code == 400 and "has not finished" in refused.json()["detail"]
    done, _ = solved_runs(project, users["owner"], problems=2, n=4, v=2)
    check = {
        "sampling_run": done.name,
        "completer": SERVER,
        "model": "m",
        "v": 3,
        "name": "api-check",
    }
    assert (
        owner.post(
            f"{base}/verification-runs/", {**check, "sampling_run": "nope"}, format="json"
        ).status_code
        == 404
    )
    started = owner.post(f"{base}/verification-runs/", check, format="json")
    assert started.status_code == 202, started.json()
    made = VerificationRun.objects.get(name="api-check")
    assert started.json()["sampling_run"] == done.name and made.v == 3
    assert made.options == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024, "chat": True}
    seen = api(users["reviewer"]).get(f"{base}/verification-runs/{made.pk}/").json()
    assert seen["verifier"] == "genrm-base" and seen["status"] == JobStatus.QUEUED
