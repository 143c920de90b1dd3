"""Job option values are checked when a job is created, with the rules the command line
uses (``scoring.options``), through the pages and the API alike: a bad value answers 400
naming it and starts nothing, instead of failing (or finishing) late on a worker."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator import jobs, montecarlo, training
from annotator.models import MonteCarloRun, Scorer, TrainingRun

pytestmark = pytest.mark.django_db

GOOD_MC = {"completer": "openai:http://127.0.0.1:9/v1", "model": "m", "mode": "binary", "n": 2}


@pytest.fixture
def staff_owner(users):
    users["owner"].is_staff = True
    users["owner"].save()
    return users["owner"]


def api_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"options": {"timeout_s": -1}}, "timeout_s"),
        ({"options": {"max_in_flight": 0}}, "max_in_flight"),
        ({"options": {"temperature": "hot"}}, "temperature"),
        ({"completer": "openai:file:///etc/passwd"}, "http"),
        ({"completer": "openai:gopher://127.0.0.1:70/"}, "http"),
        ({"completer": "openai:http://169.254.169.254/v1"}, "169.254.169.254"),
        ({"completer": "hf:/etc"}, "inside"),
    ],
)
def test_a_monte_carlo_run_with_a_bad_value_is_refused_on_creation(
    change, named, project, staff_owner
):
    with pytest.raises(jobs.RunError, match=named):
        montecarlo.create_mc_run(project, staff_owner, **(GOOD_MC | change))
    response = api_for(staff_owner).post(
        reverse("api-mc-runs", args=[project.slug]), GOOD_MC | change, format="json"
    )
    # Refused by the serializer, with the page's rules, on the field at fault.
    assert response.status_code == 400
    [(field, [message]), *_] = response.json().items()
    assert field == ("completer" if "completer" in change else "options") and named in message
    assert not MonteCarloRun.objects.exists()


def test_the_monte_carlo_form_puts_the_error_on_the_completer(project, staff_owner, client_for):
    data = GOOD_MC | {"completer": "openai:http://[fe80::1]/v1", "temperature": 1, "max_tokens": 8}
    response = client_for(staff_owner).post(reverse("mc-runs", args=[project.slug]), data)
    assert response.status_code == 400
    assert response.context["form"].errors["completer"] == [
        "the server URL may not point at fe80::1"
    ]
    assert not MonteCarloRun.objects.exists()


TRAIN = {"kind": "qwen-prm", "base_model": "Qwen/Qwen2.5-Math-7B"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"options": {"lr": "fast"}}, "lr"),
        ({"options": {"lr": 1e308}}, "lr"),
        ({"options": {"epochs": -1}}, "epochs"),
        ({"options": {"max_steps": 0}}, "max_steps"),
        ({"options": {"batch_tokens": -5}}, "batch_tokens"),
        ({"base_model": "/etc"}, "inside"),
        ({"base_model": "../../secret"}, "hub id"),
    ],
)
def test_a_training_run_with_a_bad_value_is_refused_on_creation(
    change, named, project, staff_owner
):
    with pytest.raises(jobs.RunError, match=named):
        training.create_training_run(project, staff_owner, **(TRAIN | change))
    response = api_for(staff_owner).post(
        reverse("api-training-runs", args=[project.slug]), TRAIN | change, format="json"
    )
    assert response.status_code == 400
    [(field, [message]), *_] = response.json().items()
    assert field == ("base_model" if "base_model" in change else "options") and named in message
    assert not TrainingRun.objects.exists()


def test_a_base_model_inside_the_model_directory_is_taken(project, staff_owner, settings, tmp_path):
    settings.MODEL_DIR = tmp_path
    with pytest.raises(jobs.RunError, match="no labels"):  # past every check of the request
        training.create_training_run(
            project, staff_owner, **(TRAIN | {"base_model": str(tmp_path / "b")})
        )


def test_the_training_form_puts_the_error_on_the_field(project, staff_owner, client_for):
    data = {"kind": "qwen-prm", "base_model": "b", "lora_r": 0, "epochs": 1, "lr": 1e308}
    response = client_for(staff_owner).post(reverse("training-runs", args=[project.slug]), data)
    assert response.status_code == 400
    assert "lr must be at most 1" in response.context["form"].errors["lr"][0]
    data |= {"lr": 1e-5, "base_model": "/etc/passwd"}
    response = client_for(staff_owner).post(reverse("training-runs", args=[project.slug]), data)
    assert (
        response.status_code == 400 and "inside" in response.context["form"].errors["base_model"][0]
    )
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    ("scorer", "field"),
    [
        ({"adapter": "qwen-prm", "model": "/etc/passwd"}, "model"),
        ({"adapter": "qwen-prm", "model": "../weights"}, "model"),
        ({"adapter": "arithmetic-check", "options": {"threshold": 2}}, "options"),
        ({"adapter": "arithmetic-check", "options": {"batch_tokens": 0}}, "options"),
        ({"adapter": "arithmetic-check", "options": {"threshold": "high"}}, "options"),
        (
            {"adapter": "qwen-prm", "model": "Qwen/x", "options": {"backend": "vllm"}},
            "options",
        ),
        (
            {
                "adapter": "qwen-prm",
                "model": "Qwen/x",
                "options": {"backend": "vllm", "url": "file:///etc/passwd"},
            },
            "options",
        ),
        (
            {
                "adapter": "qwen-prm",
                "model": "Qwen/x",
                "options": {"backend": "vllm", "url": "http://169.254.169.254/"},
            },
            "options",
        ),
        ({"adapter": "qwen-prm", "model": "Qwen/x", "options": {"backend": "gpu"}}, "options"),
    ],
)
def test_a_scorer_with_a_bad_model_or_option_is_not_registered(scorer, field, users, client_for):
    users["owner"].is_staff = True
    users["owner"].save()
    body = {"name": "s", "model": "", "revision": "", "options": {}} | scorer
    response = api_for(users["owner"]).post(reverse("api-scorers"), body, format="json")
    assert response.status_code == 400 and field in response.json()
    page = client_for(users["owner"]).post(
        reverse("scorers"), body | {"options": json.dumps(body["options"])}
    )
    assert page.status_code == 400 and page.context["form"].errors[field]
    assert not Scorer.objects.exists()


def test_a_scorer_model_inside_the_model_directory_or_on_the_hub_is_registered(
    users, settings, tmp_path
):
    from annotator.scorers import validate_scorer

    settings.MODEL_DIR = tmp_path
    assert validate_scorer("qwen-prm", "Qwen/Qwen2.5-Math-PRM-7B", {"threshold": 0.5}) == {}
    assert validate_scorer("qwen-prm", str(tmp_path / "trained"), {"device": "cpu"}) == {}


def test_a_scorer_on_a_vllm_server_is_registered_and_runs_on_a_default_worker(users, settings):
    from annotator.scorers import validate_scorer

    options = {"backend": "vllm", "url": "http://127.0.0.1:8100"}
    assert validate_scorer("qwen-prm", "Qwen/Qwen2.5-Math-PRM-7B", options) == {}
    on_server = Scorer(name="remote", adapter="qwen-prm", model="Qwen/x", options=options)
    local = Scorer(name="local", adapter="qwen-prm", model="Qwen/x", options={})
    assert (on_server.queue, local.queue) == ("default", "gpu")
