"""A scoring run as an owner starts it, in real Chromium, through a real worker.

The owner opens the project page, starts the tiny Qwen PRM (on CPU, so a worker on
"default" takes it) over a few traces, watches the run page until it says done, and
finds on a scored trace's page one score cell per step for the run, each carrying the
stored score.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator import runs
from annotator.importing import import_file
from annotator.models import Membership, Project, Role, Scorer, ScoringRun, Trace
from tests.factories import PROCESSBENCH_GSM8K

pytestmark = [pytest.mark.browser, pytest.mark.jobs]


@pytest.fixture
def scoring_project(transactional_db, django_user_model, tiny_qwen_prm):
    project = Project.objects.create(slug="scored", name="Scored")
    owner = django_user_model.objects.create_user("olga", password="pw-olga-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    import_file(project, PROCESSBENCH_GSM8K)
    scorer = Scorer.objects.create(
        name="tiny-qwen", adapter="qwen-prm", model=str(tiny_qwen_prm), options={"device": "cpu"}
    )
    return project, scorer


def test_an_owner_scores_traces_and_sees_the_cells(
    scoring_project, celery_worker, new_page, live_server
):
    project, scorer = scoring_project
    ids = list(Trace.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    chosen = ids[:5]

    page = new_page("olga", "pw-olga-123")
    page.goto(f"{live_server.url}/p/{project.slug}/")
    form = page.locator("#score-traces")
    expect(form).to_be_visible()  # open while the project has no run
    form.get_by_label("Scorer").select_option(str(scorer.pk))
    form.get_by_label("Trace ids").fill(" ".join(map(str, chosen)))
    form.get_by_label("Name").fill("tiny-run")
    form.locator("#start-run").click()

    run = ScoringRun.objects.get(project=project)
    page.wait_for_url(f"{live_server.url}/p/{project.slug}/runs/{run.pk}/")
    status = page.locator("#run-status")
    # The partial polls itself until the worker has scored the five traces.
    expect(page.locator("#run-state")).to_have_text("Done", timeout=180_000)
    expect(page.locator("#run-progress")).to_have_text("5 of 5")
    expect(status).not_to_have_attribute("hx-trigger", "every 1s")
    expect(page.locator("#processbench")).to_be_visible()
    run.refresh_from_db()
    assert run.status == "done" and run.queue == "default"

    trace = Trace.objects.get(pk=chosen[2])
    page.locator("#run-traces").click()
    page.get_by_role("link", name=trace.external_id, exact=True).click()
    page.wait_for_url(f"{live_server.url}/p/{project.slug}/traces/{trace.pk}/")
    row_cells = page.locator('#model-scores tr[data-run="tiny-run"] td.score-cell')
    expect(row_cells).to_have_count(trace.num_steps)
    scores = runs.scores_by_trace([run], trace)[run.pk]
    assert len(scores) == trace.num_steps
    for index, score in enumerate(scores):
        cell = row_cells.nth(index)
        expect(cell).to_have_attribute("title", f"tiny-run, step {index}: {score:.3f}")
        expect(cell.locator(".sr")).to_contain_text(f"step {index}: {score:.3f}")
