"""The training-run API: the same rules as the pages (staff owners start runs, members
who see model scores read them), the curves, cancel and retry."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator import training
from annotator.labelsets import create_label_set
from annotator.models import JobStatus, TrainingRun

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def runs_url(project) -> str:
    return f"/api/v1/projects/{project.slug}/training-runs/"


REQUEST = {
    "kind": "token-classification",
    "base_model": "Qwen/Qwen2.5-Math-7B",
    "eval_split": "eval",
    "options": {"lora_r": 8, "max_steps": 50},
    "name": "first",
}


def test_staff_owners_start_a_run_and_members_read_it(labelled, users):  # noqa: F811
    from annotator.celery import app

    owner = api_for(users["owner"])
    assert owner.post(runs_url(labelled), REQUEST, format="json").status_code == 403
    reviewer = api_for(users["reviewer"])
    assert reviewer.post(runs_url(labelled), REQUEST, format="json").status_code in (403, 404)
    assert not TrainingRun.objects.exists()

    users["owner"].is_staff = True
    users["owner"].save()
    broker = app.connection_for_write().default_channel.client
    queued_before = broker.llen("gpu")
    response = owner.post(runs_url(labelled), REQUEST, format="json")
    assert response.status_code == 202, response.json()
    run = TrainingRun.objects.get()
    assert response.json()["id"] == run.pk
    assert (run.kind, run.eval_split, run.options, run.label_set) == (
        "token-classification",
        "eval",
        {"lora_r": 8, "max_steps": 50},
        None,
    )
    assert broker.llen("gpu") == queued_before + 1

    training.store_points(run, 1, {"loss": 0.8})
    training.store_points(run, 2, {"loss": 0.6, "eval_f1": float("nan")})
    detail = api_for(users["reviewer"]).get(f"{runs_url(labelled)}{run.pk}/")
    assert detail.status_code == 200
    assert detail.json()["curves"] == {"eval_f1": [[2, None]], "loss": [[1, 0.8], [2, 0.6]]}
    listed = api_for(users["reviewer"]).get(runs_url(labelled)).json()
    assert [r["name"] for r in listed] == ["first"]
    for who in ("outsider", "annotator"):
        assert api_for(users[who]).get(runs_url(labelled)).status_code in (403, 404)
        assert api_for(users[who]).get(f"{runs_url(labelled)}{run.pk}/").status_code in (403, 404)


def test_a_bad_request_says_why_and_starts_nothing(labelled, users):  # noqa: F811
    users["owner"].is_staff = True
    users["owner"].save()
    owner = api_for(users["owner"])
    for changes, message in (
        ({"options": {"learning_rate": 1}}, "unknown option"),
        (
            {"label_set": "no-such-set"},
            "no label set named 'no-such-set'; this project's: none yet",
        ),
        ({"eval_split": "train", "name": "x"}, None),  # fine: a held-out split exists
    ):
        response = owner.post(runs_url(labelled), REQUEST | changes, format="json")
        if message is None:
            assert response.status_code == 202
            continue
        assert response.status_code == 400
        # The serializer's errors by field, or a refusal's detail.
        said = [m for v in response.json().values() for m in (v if isinstance(v, list) else [v])]
        assert any(message in m for m in said), said
    bad_kind = owner.post(runs_url(labelled), REQUEST | {"kind": "nope"}, format="json")
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()
    assert TrainingRun.objects.count() == 1


def test_an_eval_split_without_labelled_traces_is_refused(labelled, users):  # noqa: F811
    users["owner"].is_staff = True
    users["owner"].save()
    response = api_for(users["owner"]).post(
        runs_url(labelled), REQUEST | {"eval_split": "nosuch"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("eval_split 'nosuch': no labelled trace")
    assert not TrainingRun.objects.exists()


def test_a_run_trains_on_a_label_set_named_in_the_request(labelled, users):  # noqa: F811
    users["owner"].is_staff = True
    users["owner"].save()
    made = create_label_set(labelled, "imported", "human")
    response = api_for(users["owner"]).post(
        runs_url(labelled), REQUEST | {"label_set": "imported"}, format="json"
    )
    assert response.status_code == 202, response.json()
    assert TrainingRun.objects.get().label_set == made
    assert response.json()["label_set"] == "imported"


def test_owners_cancel_and_retry_and_a_get_changes_nothing(labelled, users):  # noqa: F811
    run = training.create_training_run(
        labelled, users["owner"], kind="qwen-prm", base_model="Qwen/Qwen2.5-Math-PRM-7B"
    )
    base = f"{runs_url(labelled)}{run.pk}"
    owner = api_for(users["owner"])
    assert owner.get(f"{base}/cancel/").status_code == 405
    assert api_for(users["reviewer"]).post(f"{base}/cancel/").status_code in (403, 404)
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and not run.cancel_requested

    assert owner.post(f"{base}/cancel/").status_code == 200
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    assert owner.post(f"{base}/retry/").status_code in (200, 202)
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED
