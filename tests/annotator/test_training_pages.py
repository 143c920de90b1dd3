"""The training pages: the runs list and its start form (staff owners), a run's page
with its live curve, cancel and retry, and the curve store."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator import charts, training
from annotator.models import JobStatus, Scorer, TrainingRun
from tests.factories import make_trace

pytestmark = pytest.mark.django_db

POLLING = b'hx-trigger="every 1s"'  # every job page polls at one rate (job_status.html)


def make_run(project, user, **kwargs) -> TrainingRun:
    return training.create_training_run(
        project, user, kind="qwen-prm", base_model="Qwen/Qwen2.5-Math-PRM-7B", **kwargs
    )


def test_it_checks_membership(labelled, client_for, users):
    run = make_run(labelled, users["owner"])
    for name, args in (
        ("training-runs", [labelled.slug]),
        ("training-run", [labelled.slug, run.pk]),
    ):
        assert client_for(users["outsider"]).get(reverse(name, args=args)).status_code == 404
        assert client_for(users["reviewer"]).get(reverse(name, args=args)).status_code == 200
    for name in ("training-cancel", "training-retry"):
        url = reverse(name, args=[labelled.slug, run.pk])
        assert client_for(users["reviewer"]).post(url).status_code in (403, 404)
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and not run.cancel_requested


def test_only_staff_owners_start_a_run(labelled, client_for, users):
    from annotator.celery import app

    url = reverse("training-runs", args=[labelled.slug])
    data = {
        "kind": "token-classification",
        "base_model": "Qwen/Qwen2.5-Math-7B",
        "eval_split": "eval",
        "lora_r": 8,
        "epochs": 2,
        "max_steps": 50,
        "name": "first",
    }
    client = client_for(users["owner"])
    assert b'id="training-form"' not in client.get(url).content
    assert client.post(url, data).status_code == 403
    assert not TrainingRun.objects.exists()

    users["owner"].is_staff = True
    users["owner"].save()
    broker = app.connection_for_write().default_channel.client
    queued_before = broker.llen("gpu")
    assert b'id="training-form"' in client.get(url).content
    response = client.post(url, data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("training-run", args=[labelled.slug, run.pk])
    assert (run.status, run.queue, run.kind, run.eval_split) == (
        JobStatus.QUEUED,
        "gpu",
        "token-classification",
        "eval",
    )
    assert run.options == {"lora_r": 8, "epochs": 2.0, "max_steps": 50}
    assert run.output_dir.endswith(f"{labelled.slug}/first")
    assert broker.llen("gpu") == queued_before + 1


def test_a_run_that_cannot_train_shows_why(labelled, client_for, users):
    from annotator.models import Trace

    users["owner"].is_staff = True
    users["owner"].save()
    Trace.objects.filter(project=labelled).update(split="eval")
    url = reverse("training-runs", args=[labelled.slug])
    data = {"kind": "qwen-prm", "base_model": "b", "lora_r": 0, "epochs": 1, "eval_split": "eval"}
    response = client_for(users["owner"]).post(url, data)
    assert response.status_code == 400
    assert b"every labelled trace is in the evaluation split" in response.content
    assert not TrainingRun.objects.exists()
    with pytest.raises(training.RunError, match="unknown option"):
        make_run(labelled, users["owner"], options={"learning_rate": 1})


def test_an_eval_split_without_labelled_traces_is_refused_on_the_field(labelled, client_for, users):
    users["owner"].is_staff = True
    users["owner"].save()
    make_trace(labelled, split="unlabelled")
    url = reverse("training-runs", args=[labelled.slug])
    data = {"kind": "qwen-prm", "base_model": "b", "lora_r": 0, "epochs": 1}
    for split in ("nosuch", "unlabelled"):
        response = client_for(users["owner"]).post(url, data | {"eval_split": split})
        assert response.status_code == 400
        assert response.context["form"].errors["eval_split"] == [
            f"eval_split {split!r}: no labelled trace is in this split "
            "(the labelled traces' splits: 'eval', 'train')"
        ]
        assert not TrainingRun.objects.exists()


def test_the_curve_keeps_one_point_per_step_and_name(labelled, users):
    run = make_run(labelled, users["owner"])
    training.store_points(run, 5, {"loss": 0.9, "epoch": 0.5})
    training.store_points(run, 5, {"loss": 0.7, "learning_rate": 1e-4})  # logged again on resume
    training.store_points(run, 10, {"eval_f1": float("nan")})
    assert training.curves(run) == {
        "eval_f1": [(10, None)],
        "learning_rate": [(5, 1e-4)],
        "loss": [(5, 0.7)],
    }


def test_the_run_page_draws_the_curve_and_polls_while_running(labelled, client_for, users):
    run = make_run(labelled, users["owner"])
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, progress_total=3)
    url = reverse("training-run", args=[labelled.slug, run.pk])
    client = client_for(users["owner"])
    assert b'id="training-no-curve"' in client.get(url).content
    for step, loss in ((1, 0.8), (2, 0.6), (3, 0.5)):
        training.store_points(run, step, {"loss": loss})
    training.store_points(run, 3, {"eval_f1": 71.5})

    page = client.get(url)
    assert POLLING in page.content and b'id="training-curve"' in page.content
    assert b"vendor/plotly/plotly.min.js" in page.content
    partial = client.get(url, headers={"HX-Request": "true"})
    assert partial.content.lstrip().startswith(b'<div id="training-status"')
    fig = charts.training_curve(training.curves(run))
    assert [(t.name, list(t.x), list(t.y)) for t in fig.data] == [
        ("training loss", [1, 2, 3], [0.8, 0.6, 0.5]),
        ("held-out F1", [3], [71.5]),
    ]

    scorer = Scorer.objects.create(name="gsm8k-trained", adapter="qwen-prm", model=run.output_dir)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE, scorer=scorer)
    done = client.get(url)
    assert POLLING not in done.content
    assert b'id="training-score"' in done.content  # one click to a scoring run
    assert f'name="scorer" value="{scorer.pk}"'.encode() in done.content
    assert b'id="training-score"' not in client_for(users["reviewer"]).get(url).content


def test_owners_cancel_a_queued_run_and_retry_it(labelled, client_for, users):
    run = make_run(labelled, users["owner"])
    client = client_for(users["owner"])
    response = client.post(reverse("training-cancel", args=[labelled.slug, run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    client.post(reverse("training-retry", args=[labelled.slug, run.pk]))
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED


def test_a_get_never_changes_state(labelled, client_for, users):
    run = make_run(labelled, users["owner"])
    client = client_for(users["owner"])
    for name in ("training-cancel", "training-retry"):
        assert client.get(reverse(name, args=[labelled.slug, run.pk])).status_code == 405
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and not run.cancel_requested


def test_the_label_set_menu_names_each_set_and_its_source(labelled, client_for, users):
    from annotator.labelsets import create_label_set

    users["owner"].is_staff = True
    users["owner"].save()
    made = create_label_set(labelled, "agreed", "human")
    page = client_for(users["owner"]).get(reverse("training-runs", args=[labelled.slug]))
    text = page.content.decode()
    assert '<label for="id_label_set">Labels:</label>' in text
    assert '<option value="" selected>Human labels (agreed or adjudicated)</option>' in text
    traces = made.summary["traces"]
    option = f"agreed: Human labels (agreed or adjudicated), {traces} traces</option>"
    assert option in text
    assert "label set agreed in" not in text
