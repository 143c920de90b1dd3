"""The trace page's grounded search trees: who sees them (model scores and reference answer
both), the nodes with their decisions, values and visits, transcripts escaped, GET only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator.models import GroundedRun, GroundedTree
from scoring.grounded import Step, expand, new_tree, record_rollout
from scoring.grounded.search import Problem, SearchState
from scoring.tools import ToolVerdict
from tests.factories import make_trace

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="alert(1)">'


def checked(objective: str, action: str, decision: str, terminal: bool = False) -> Step:
    verdict = ToolVerdict("sympy", f"query of {objective}", f"output of {objective}", decision)
    return Step(objective, action, verdict, None, terminal)


def grounded_state(problem_text: str) -> dict:
    """A small real tree: three children of the root, the third a wrong step, and a rollout
    from the first that ends right."""
    tree = new_tree(problem_text, "4")
    tree, first = expand(
        tree,
        0,
        [
            checked("Add two and two", "2 + 2 = 4, \\boxed{s = 4}", "correct"),
            checked("Sum the numbers", "\\boxed{s = 4}", "correct"),
            checked("Add wrongly", f"2 + 2 = 5 {HOSTILE}, \\boxed{{s = 5}}", "wrong"),
        ],
    )
    tree = record_rollout(
        tree, first, [checked("State it", "\\boxed{4} <end>", "correct", terminal=True)], True
    )
    return SearchState(Problem("1", problem_text, "4"), tree).to_dict()


@pytest.fixture
def searched(project, users):
    trace = make_trace(project, ext="g1")
    run = GroundedRun.objects.create(
        project=project, name="grounded-1", generator="openai:http://127.0.0.1:9/v1", model="m"
    )
    state = grounded_state(trace.problem.text)
    GroundedTree.objects.create(
        run=run, problem=trace.problem, state=state, rounds=1, nodes=len(state["tree"]["nodes"])
    )
    return trace, run


def test_a_reviewer_sees_every_node_with_its_decision_value_and_visits(
    searched, client_for, users, project
) -> None:
    trace, _ = searched
    page = client_for(users["reviewer"]).get(reverse("trace", args=[project.slug, trace.pk]))
    url = reverse("trace-grounded", args=[project.slug, trace.pk])
    assert url.encode() in page.content
    response = client_for(users["reviewer"]).get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="gnode') == 4  # three children and a rollout step, no root
    assert html.count("gnode decision-wrong") == 1 and html.count("gnode decision-correct") == 3
    # the first child: final_V of a one-step rollout is its outcome, added without a visit
    assert 'Add two and two <span class="muted small">value 1.00 · visits 0</span>' in html
    assert html.count("· rollout") == 1
    assert "query of Add wrongly" in html and "output of State it" in html
    assert HOSTILE not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_members_who_do_not_see_the_reference_answer_get_no_tree(
    searched, client_for, users, project
) -> None:
    trace, _ = searched
    project.show_model_scores = True
    project.show_reference_answer = False
    project.save()
    url = reverse("trace-grounded", args=[project.slug, trace.pk])
    page = client_for(users["annotator"]).get(reverse("trace", args=[project.slug, trace.pk]))
    assert page.status_code == 200 and url.encode() not in page.content
    assert client_for(users["annotator"]).get(url).status_code == 404
    assert client_for(users["outsider"]).get(url).status_code == 404
    project.show_reference_answer = True
    project.save()
    assert client_for(users["annotator"]).get(url).status_code == 200


def test_the_tree_section_answers_get_only(searched, client_for, users, project) -> None:
    trace, _ = searched
    url = reverse("trace-grounded", args=[project.slug, trace.pk])
    assert client_for(users["owner"]).post(url).status_code == 405
