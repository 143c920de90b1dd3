"""Forms that name one of the project's runs, label sets or splits offer the project's
own as a menu (they were free text boxes), and a name the project lacks, sent to the
page or the API, is refused with a message naming the project's choices."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotator import labelsets
from annotator.models import JobStatus, MonteCarloRun, Project, ScoringRun, Trace
from tests.factories import make_trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def named(project, users):
    """A project with a Monte-Carlo run, a scoring run, two label sets and two splits;
    another project with runs and a set of its own, which must not be offered."""
    for split in ("train", "eval"):
        make_trace(project, split=split)
    MonteCarloRun.objects.create(
        project=project, name="mc-a", completer="openai:http://127.0.0.1:1", status=JobStatus.DONE
    )
    ScoringRun.objects.create(project=project, name="prm-a", status=JobStatus.DONE)
    labelsets.create_label_set(project, "people", "human")
    labelsets.create_label_set(project, "reviewed", "human", {"reviewed_only": True})
    other = Project.objects.create(slug="other", name="Other")
    make_trace(other, split="elsewhere")
    MonteCarloRun.objects.create(project=other, name="mc-theirs", completer="openai:x")
    ScoringRun.objects.create(project=other, name="prm-theirs", status=JobStatus.DONE)
    labelsets.create_label_set(other, "theirs", "human")
    users["owner"].is_staff = True
    users["owner"].save()
    return project


def _select(html: str, name: str) -> str:
    """The ``<select name=...>`` element's HTML (the test fails if it is not one)."""
    found = re.search(rf'<select name="{name}".*?</select>', html, flags=re.S)
    assert found, f"{name} is not a menu"
    return found.group(0)


def _options(select: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"', select)


def test_the_label_set_form_offers_the_projects_runs_and_sets(named, users, client_for):
    html = client_for(users["owner"]).get(reverse("label-sets", args=[named.slug])).content.decode()
    run = _select(html, "run")
    assert '<optgroup label="Monte-Carlo runs">' in run and '<optgroup label="Scoring runs">' in run
    assert _options(run) == ["", "mc-a", "prm-a"]
    for field in ("a", "b"):
        assert _options(_select(html, field)) == ["", "people", "reviewed"]


def test_an_unknown_name_is_refused_naming_the_projects_choices(named, users, client_for):
    owner = client_for(users["owner"])
    url = reverse("label-sets", args=[named.slug])
    for data, message in (
        (
            {"name": "x", "source": "mc-hard", "run": "mc-theirs"},
            "no Monte-Carlo run named &#x27;mc-theirs&#x27;; this project&#x27;s: mc-a",
        ),
        (
            {"name": "x", "source": "scoring", "run": "nope"},
            "no scoring run named &#x27;nope&#x27;; this project&#x27;s: prm-a",
        ),
        (
            {"name": "x", "source": "consensus", "a": "people", "b": "theirs"},
            "no label set named &#x27;theirs&#x27;; this project&#x27;s: people, reviewed",
        ),
    ):
        response = owner.post(url, data)
        assert response.status_code == 400
        assert message in response.content.decode()
    api = reverse("api-label-sets", args=[named.slug])
    response = owner.post(
        api,
        {"name": "x", "source": "mc-soft", "params": {"run": "nope", "threshold": 0.5}},
        "application/json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "no Monte-Carlo run named 'nope'; this project's: mc-a",
        "code": "invalid",
    }
    assert not named.label_sets.filter(name="x").exists()
    # A name the menus offer is accepted.
    made = owner.post(url, {"name": "both", "source": "consensus", "a": "people", "b": "reviewed"})
    assert made.status_code == 302


def test_training_and_monte_carlo_forms_offer_the_projects_splits(named, users, client_for):
    owner = client_for(users["owner"])
    training = owner.get(reverse("training-runs", args=[named.slug])).content.decode()
    assert _options(_select(training, "eval_split")) == ["", "eval", "train"]
    label_sets = named.label_sets.values_list("pk", flat=True)
    assert sorted(_options(_select(training, "label_set"))) == sorted(
        ["", *(str(pk) for pk in label_sets)]
    )
    mc = owner.get(reverse("mc-runs", args=[named.slug])).content.decode()
    assert _options(_select(mc, "split")) == ["", "eval", "train"]
    assert Trace.objects.filter(split="elsewhere").exists()  # another project's: not offered
    # A split the project lacks is refused on the field, naming the project's.
    start = {"completer": "openai:http://127.0.0.1:9/v1", "model": "m", "mode": "binary", "n": 2}
    start |= {"temperature": 1.0, "max_tokens": 64, "split": "elsewhere"}
    response = owner.post(reverse("mc-runs", args=[named.slug]), start)
    assert response.status_code == 400
    assert response.context["form"].errors["split"] == [
        "no split named 'elsewhere'; this project's: eval, train"
    ]
    api = owner.post(
        reverse("api-mc-runs", args=[named.slug]),
        {
            "completer": "openai:http://127.0.0.1:9/v1",
            "model": "m",
            "selection": {"split": "elsewhere"},
        },
        "application/json",
    )
    assert api.status_code == 400
    assert "no split named 'elsewhere'; this project's: eval, train" in str(api.json())
    assert not MonteCarloRun.objects.filter(project=named).exclude(name="mc-a").exists()
