"""The run forms and requests ask for shards: ``shard_traces`` blank is the server's
default (``RUN_SHARD_TRACES``), 0 one job, N shards of N items (traces, problems or
solutions, by kind), and anything else is refused on the field, starting nothing; an
import is one job; a sharded run's page shows its shards in its kind's items."""

from __future__ import annotations

import math

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator import shards
from annotator.models import (
    GroundedRun,
    MonteCarloRun,
    SamplingRun,
    Scorer,
    ScoringRun,
    Shard,
    VerificationRun,
)
from tests.factories import make_trace, solved_runs

pytestmark = pytest.mark.django_db

SERVER = {"completer": "openai:http://127.0.0.1:9/v1", "model": "m"}
SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64}
ITEMS = 5


@pytest.fixture
def staff_owner(users):
    users["owner"].is_staff = True
    users["owner"].save()
    return users["owner"]


@pytest.fixture
def broker():
    """The test's messages taken off the queue again (no worker takes them here)."""
    from annotator.celery import app

    client = app.connection_for_write().default_channel.client
    untouched = client.llen("default")
    yield client
    for _ in range(client.llen("default") - untouched):  # this test's, the newest
        client.lpop("default")


def traces(project) -> None:
    for i in range(ITEMS):
        make_trace(project, ext=f"t{i}", problem_text=f"What is {i} + 2?", reference_answer="4")


def score_form(project, user):
    traces(project)
    scorer = Scorer.objects.create(name="arith", adapter="arithmetic-check")
    return "runs", {"scorer": scorer.pk}, ScoringRun


def mc_form(project, user):
    traces(project)
    data = SERVER | {"mode": "binary", "n": 2, "temperature": 1, "max_tokens": 8}
    return "mc-runs", data, MonteCarloRun


def sampling_form(project, user):
    traces(project)
    return "solve-runs", SERVER | SAMPLING | {"n": 2}, SamplingRun


def verification_form(project, user):
    run, _ = solved_runs(project, user, problems=ITEMS, n=1, v=1)
    data = SERVER | {"sampling_run": run.pk, "verifier": "genrm-base", "v": 2, "per_problem": 0}
    return "verification-start", data, VerificationRun


def grounded_form(project, user):
    traces(project)
    data = SERVER | {
        "generator": SERVER["completer"],
        "judge": "tool",
        "search_selection": "uct",
        "seed": 0,
        "temperature": 1,
        "judge_temperature": 0.6,
        "max_tokens": 64,
    }
    return "grounded-runs", data, GroundedRun


@pytest.mark.parametrize(
    "form", [score_form, mc_form, sampling_form, verification_form, grounded_form]
)
def test_each_run_form_asks_for_shards_of_its_items(
    form, project, staff_owner, client_for, broker, settings
):
    settings.RUN_SHARD_TRACES = 2
    url, data, model = form(project, staff_owner)
    client = client_for(staff_owner)

    def start(size: str) -> int | None:
        before = set(model.objects.values_list("pk", flat=True))
        response = client.post(reverse(url, args=[project.slug]), data | {"shard_traces": size})
        if response.status_code != 302:
            assert response.status_code == 400
            assert "shard_traces" in _form(response).errors
            return None
        [run_id] = set(model.objects.values_list("pk", flat=True)) - before
        return shards.shards_of(model, run_id).count()

    assert start("") == math.ceil(ITEMS / 2)  # the server's default
    assert start("0") == 0
    assert start("3") == math.ceil(ITEMS / 3)
    runs_before = model.objects.count()
    assert start("-1") is None and start("two") is None
    assert model.objects.count() == runs_before


def _form(response):
    """The bound form the page answered with (its context names it by kind)."""
    for key in ("score_form", "form", "sampling_form", "verification_form"):
        if response.context.get(key) is not None and response.context[key].is_bound:
            return response.context[key]
    raise AssertionError("no bound form on the page")


def api_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_the_sampling_and_verification_requests_ask_for_shards(
    project, staff_owner, broker, settings
):
    settings.RUN_SHARD_TRACES = 0
    traces(project)
    api = api_for(staff_owner)
    url = reverse("api-sampling-runs", args=[project.slug])
    ask = SERVER | {"n": 2, "options": SAMPLING}

    sharded = api.post(url, ask | {"name": "sharded", "shard_traces": 2}, format="json")
    whole = api.post(url, ask | {"name": "whole"}, format="json")
    refused = api.post(url, ask | {"name": "bad", "shard_traces": -2}, format="json")

    assert sharded.status_code == 202 and sharded.json()["shards"]["total"] == 3
    assert sharded.json()["shards"]["unit"] == "problems"
    assert whole.status_code == 202 and whole.json()["shards"] is None
    assert refused.status_code == 400 and "shard_traces" in refused.json()
    assert not SamplingRun.objects.filter(name="bad").exists()

    solved, _ = solved_runs(project, staff_owner, problems=3, n=2, v=1)
    check = api.post(
        reverse("api-verification-runs", args=[project.slug]),
        SERVER | {"sampling_run": solved.name, "v": 1, "shard_traces": 4},
        format="json",
    )
    assert check.status_code == 202 and check.json()["shards"]["total"] == 2
    assert check.json()["shards"]["unit"] == "solutions"


def test_an_import_is_one_job(project, staff_owner, settings):
    from annotator.jobs import RunError
    from annotator.sampling import create_sampling_run

    settings.RUN_SHARD_TRACES = 2  # the default does not apply to an import
    folder = settings.MODEL_DIR / f"samples-{project.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    run = create_sampling_run(project, staff_owner, completer=f"sc-genrm:{folder}", n=4)
    assert not Shard.objects.filter(run_id=run.pk, content_type__model="samplingrun").exists()
    with pytest.raises(RunError, match="one job"):
        create_sampling_run(
            project, staff_owner, completer=f"sc-genrm:{folder}", n=4, shard_traces=2, name="x"
        )


def test_a_sharded_sampling_run_s_page_counts_problems(project, staff_owner, client_for):
    from annotator.sampling import create_sampling_run

    traces(project)
    run = create_sampling_run(project, staff_owner, **SERVER, n=2, options=SAMPLING, shard_traces=3)
    in_flight = shards.claim(SamplingRun, run.pk, "gpu-box-2 pid 77")
    Shard.objects.filter(pk=in_flight.pk).update(done=1)

    page = client_for(staff_owner).get(reverse("sampling-run", args=[project.slug, run.pk]))

    text = page.content.decode()
    assert '<span id="shards-done">0 of 2</span> shards done' in text
    assert "shard 1 on <code>gpu-box-2</code>" in text and "1 of 3 problems" in text
