"""Grounded run pages: who sees them, who starts a run, the status and the step-label
downloads from the stored trees."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotator.models import GroundedRun, GroundedTree
from scoring.grounded.exports import generative_records, trl_records
from scoring.grounded.search import SearchState
from tests.annotator.test_grounded_trees import grounded_state
from tests.factories import HTMX, make_trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(project):
    trace = make_trace(project, ext="g1")
    run = GroundedRun.objects.create(
        project=project, name="grounded-1", generator="openai:http://127.0.0.1:9/v1", model="m"
    )
    state = grounded_state(trace.problem.text)
    GroundedTree.objects.create(
        run=run,
        problem=trace.problem,
        state=state,
        rounds=1,
        nodes=len(state["tree"]["nodes"]),
        done=True,
    )
    return run


def pages(project, run) -> list[str]:
    return [
        reverse("grounded-runs", args=[project.slug]),
        reverse("grounded-run", args=[project.slug, run.pk]),
        reverse("grounded-export-trl", args=[project.slug, run.pk]),
        reverse("grounded-export-generative", args=[project.slug, run.pk]),
    ]


def test_the_pages_are_for_members_who_see_scores_and_the_reference_answer(
    project, users, run, client_for
) -> None:
    for who, status in (("outsider", 404), ("annotator", 404), ("reviewer", 200), ("owner", 200)):
        client = client_for(users[who])
        assert [client.get(page).status_code for page in pages(project, run)] == [status] * 4
    project.show_model_scores = True
    project.save()
    assert client_for(users["annotator"]).get(pages(project, run)[0]).status_code == 200
    project.show_reference_answer = False
    project.save()
    for page in pages(project, run):
        assert client_for(users["annotator"]).get(page).status_code == 404


def test_the_exports_are_the_stored_trees_step_labels(project, users, run, client_for) -> None:
    state = SearchState.from_dict(GroundedTree.objects.get(run=run).state)
    client = client_for(users["reviewer"])
    for kind, records in (("trl", trl_records), ("generative", generative_records)):
        response = client.get(reverse(f"grounded-export-{kind}", args=[project.slug, run.pk]))
        assert response["Content-Disposition"] == f'attachment; filename="grounded-1-{kind}.jsonl"'
        lines = response.content.decode().splitlines()
        assert [json.loads(line) for line in lines] == records(state) != []


def test_the_run_page_lists_the_searched_problems_and_stops_polling_when_done(
    project, users, run, client_for
) -> None:
    url = reverse("grounded-run", args=[project.slug, run.pk])
    html = client_for(users["owner"]).get(url, **HTMX).content.decode()
    assert 'id="grounded-run-status"' in html and "hx-get" in html  # queued: it polls
    assert (
        '<td class="figure">1</td><td class="figure">5</td><td>done</td>' in html
    )  # root included
    GroundedRun.objects.filter(pk=run.pk).update(status="done")
    assert "hx-get" not in client_for(users["owner"]).get(url, **HTMX).content.decode()


def test_only_staff_owners_start_runs(project, users, run, client_for) -> None:
    make_trace(project, ext="g2", reference_answer="5")
    url = reverse("grounded-runs", args=[project.slug])
    start = {
        "generator": "openai:http://127.0.0.1:9/v1",
        "model": "m",
        "judge": "tool",
        "search_selection": "released",
        "seed": 4,
        "temperature": 1.0,
        "judge_temperature": 0.6,
        "max_tokens": 512,
        "chat": "on",
        "name": "from-page",
    }
    assert client_for(users["reviewer"]).post(url, start).status_code == 403
    owner = client_for(users["owner"])
    assert 'id="grounded-form"' not in owner.get(url).content.decode()
    assert owner.post(url, start).status_code == 403
    users["owner"].is_staff = True
    users["owner"].save()
    assert 'id="grounded-form"' in owner.get(url).content.decode()
    response = owner.post(url, start)
    assert response.status_code == 302
    made = GroundedRun.objects.get(project=project, name="from-page")
    assert (made.search_selection, made.seed, made.queue, made.judge) == (
        "released",
        4,
        "default",
        "tool",
    )
    assert made.options == {"max_tokens": 512, "seed": 4, "temperature": 1.0, "chat": True}
    bad = owner.post(url, {**start, "name": "bad", "generator": "ftp://x"})
    assert bad.status_code == 400
