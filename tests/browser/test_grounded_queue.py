"""The "tool and rollouts disagree" queue in real Chromium: a grounded run searched against
the scripted completer server brings its paths in, *Start* serves the trace whose steps'
tool verdict and rollouts disagree, its Label page shows the tool transcripts (a click opens
one) beside the labelling form, and no console error."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.grounded import create_grounded_run, run_grounded_job
from annotator.models import GroundedPath, Membership, Project, QueueOrder, Role
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
def conflicts(transactional_db, django_user_model, server):
    project = Project.objects.create(
        slug="conflicts", name="Conflicts", queue_order=QueueOrder.TOOL_VS_ROLLOUTS
    )
    owner = django_user_model.objects.create_user("olga", password="pw-olga-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    make_trace(
        project, ext="g1", problem_text=grounded_server.problem(3, 4, 5), reference_answer="35"
    )
    run = create_grounded_run(project, owner, generator=f"openai:{server}", model="generator")
    run_grounded_job(run)
    first = (
        GroundedPath.objects.filter(run=run, disagreements__gt=0)
        .order_by("-disagreements", "trace_id")
        .first()
    )
    assert first is not None
    return project, first


def test_the_conflict_queue_serves_a_disagreement_with_its_tool_transcripts(
    conflicts, new_page, live_server
) -> None:
    project, path = conflicts
    page = new_page("olga", "pw-olga-123")
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    page.locator("#start").click()
    expect(page.locator("#workspace")).to_have_attribute("data-trace-id", str(path.trace_id))

    evidence = page.locator("#grounded-evidence")
    expect(evidence).to_be_visible()
    expect(evidence.locator("li.gnode")).to_have_count(len(path.nodes))
    step = path.disagreeing[0]
    item = evidence.locator(f"#evidence-{step}")
    expect(item).to_have_class(f"gnode decision-{path.decisions[step]} disagrees")
    expect(item.locator(".disagrees-mark")).to_be_visible()
    transcript = item.locator(".transcript")
    expect(transcript).to_be_hidden()
    item.locator("summary").click()
    expect(transcript).to_be_visible()
    expect(transcript.locator(".gverdict")).to_contain_text(path.verdicts[step]["query"].strip())
    # the form is still there to label with
    expect(page.locator("#submit")).to_be_enabled()
    assert errors == []
