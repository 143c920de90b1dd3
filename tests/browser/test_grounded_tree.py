"""The trace page's grounded search tree in real Chromium: a tree grown by a real search
against the scripted completer server, every node drawn with its decision, a node's tool
transcript opened by a click, and no console error."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import GroundedRun, GroundedTree, Membership, Project, Role
from scoring.completers import load_completer
from scoring.grounded.checking import Checker
from scoring.grounded.search import Problem, Search, extract_root, new_search
from tests.factories import make_trace
from tests.scoring import grounded_server

pytestmark = pytest.mark.browser


@pytest.fixture
def server():
    process, url = grounded_server.spawn()
    yield url
    process.kill()
    process.wait()


@pytest.fixture
def searched(transactional_db, django_user_model, server):
    project = Project.objects.create(slug="grounded", name="Grounded")
    owner = django_user_model.objects.create_user("gina", password="pw-gina-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    trace = make_trace(
        project, ext="g1", problem_text=grounded_server.problem(3, 4, 5), reference_answer="35"
    )
    generator = load_completer(f"openai:{server}", "generator")
    problem = extract_root(Problem(str(trace.problem_id), trace.problem.text, "35"), generator)
    state = Search(generator, Checker(writer=generator)).run(new_search(problem, seed=1))
    run = GroundedRun.objects.create(
        project=project, name="grounded-1", generator=f"openai:{server}", model="generator"
    )
    GroundedTree.objects.create(
        run=run,
        problem=trace.problem,
        state=state.to_dict(),
        rounds=state.tree.rounds,
        nodes=len(state.tree.nodes),
        done=True,
    )
    return project, trace, state


def test_the_tree_draws_every_node_and_opens_a_transcript_on_click(
    searched, new_page, live_server
) -> None:
    project, trace, state = searched
    page = new_page("gina", "pw-gina-123")
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/p/{project.slug}/traces/{trace.pk}/")
    tree = page.locator('#grounded-section .grounded-tree[data-run="grounded-1"]')
    expect(tree).to_be_visible()
    nodes = tree.locator("li.gnode")
    expect(nodes).to_have_count(len(state.tree.nodes) - 1)  # every node but the root
    planted = [
        n
        for n in state.tree.nodes
        if n.step is not None and grounded_server.PLANTED in n.step.objective
    ]
    assert planted
    node = tree.locator(f'li.gnode[data-node="{planted[0].id}"]')
    expect(node).to_have_class("gnode decision-wrong")
    transcript = node.locator(":scope > details > .transcript")
    expect(transcript).to_be_hidden()
    node.locator(":scope > details > summary").click()
    expect(transcript).to_be_visible()
    expect(transcript.locator(".gverdict")).to_contain_text(planted[0].step.verdict.query)
    assert errors == []
