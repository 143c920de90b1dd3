"""A project that hides its reference answers never lists nor serves its reference
solutions to annotators (they end in the answer)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotator import queue
from annotator.models import MCRollout, MonteCarloRun, TraceMC
from tests.factories import make_trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def hidden(project):
    project.show_reference_answer = False
    project.save()
    reference = make_trace(project, ext="ref-1", generator="reference")
    solution = make_trace(project, ext="sol-1", generator="gpt-4o")
    return project, reference, solution


def test_the_project_page_lists_no_reference_trace_to_annotators(hidden, client_for, users):
    project, reference, solution = hidden
    page = client_for(users["annotator"]).get(reverse("project", args=[project.slug]))
    assert reverse("trace", args=[project.slug, solution.pk]).encode() in page.content
    assert reverse("trace", args=[project.slug, reference.pk]).encode() not in page.content
    page = client_for(users["reviewer"]).get(reverse("project", args=[project.slug]))
    assert reverse("trace", args=[project.slug, reference.pk]).encode() in page.content


def test_the_queue_never_serves_a_hidden_reference_trace(hidden, users):
    project, reference, solution = hidden
    served = queue.claim_next(project, users["annotator"])
    assert served.trace == solution
    project.annotators_per_trace = 1
    project.save()
    assert queue.claim_next(project, users["reviewer"]).trace is None  # only the reference left


def test_the_queue_serves_reference_traces_where_answers_are_shown(hidden, users):
    project, reference, solution = hidden
    project.show_reference_answer = True
    project.save()
    served = {queue.claim_next(project, users[who]).trace for who in ("annotator", "reviewer")}
    assert reference in served


def test_the_generator_menu_offers_reference_only_to_those_who_may_see_it(
    hidden, client_for, users
):
    project, _, _ = hidden
    url = reverse("project", args=[project.slug])
    option = b'<option value="reference"'
    assert option not in client_for(users["annotator"]).get(url).content
    assert b'<option value="gpt-4o"' in client_for(users["annotator"]).get(url).content
    assert option in client_for(users["reviewer"]).get(url).content


@pytest.fixture
def rollouts(hidden):
    """A finished Monte-Carlo run that kept its rollouts of the model solution, in a
    project that shows model scores: two answers, one marked right (it is the hidden
    reference answer) and one wrong."""
    project, _, solution = hidden
    project.show_model_scores = True
    project.save()
    run = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:1", keep_rollouts=True
    )
    TraceMC.objects.create(
        run=run, trace=solution, mc=[0.5] * 3, hard=[1] * 3, progress=[0.0] * 3, first_error=-1
    )
    for sample, (answer, correct) in enumerate([("ANSWER-SEVEN", True), ("ANSWER-NINE", False)]):
        MCRollout.objects.create(
            run=run,
            trace=solution,
            step_index=0,
            sample=sample,
            text=f"so the answer is {answer}",
            answer=answer,
            correct=correct,
        )
    return project, solution


def rollouts_shown(client, project, trace) -> dict[str, bool]:
    html = client.get(reverse("trace-mc", args=[project.slug, trace.pk])).content
    assert b'id="mc-values"' in html  # the model scores themselves are shown
    return {
        "marks": b'class="right"' in html or b'class="wrong"' in html,
        "answers": b"ANSWER-SEVEN" in html,
    }


@pytest.mark.parametrize(
    ("role", "answers_shown", "shown"),
    [("annotator", False, False), ("annotator", True, True), ("reviewer", False, True)],
)
def test_rollouts_marked_right_or_wrong_are_shown_only_where_the_answer_is(
    rollouts, client_for, users, role, answers_shown, shown
):
    project, solution = rollouts
    project.show_reference_answer = answers_shown
    project.save()
    seen = rollouts_shown(client_for(users[role]), project, solution)
    assert seen == {"marks": shown, "answers": shown}


def test_the_monte_carlo_section_looks_the_membership_up_once(rollouts, client_for, users):
    """The view hands its membership to the template, whose hiding tag would otherwise
    look it up again."""
    project, solution = rollouts
    client = client_for(users["annotator"])
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("trace-mc", args=[project.slug, solution.pk]))
    lookups = [q["sql"] for q in queries if 'FROM "annotator_membership"' in q["sql"]]
    assert len(lookups) == 1
