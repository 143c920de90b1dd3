"""A training run's page in real Chromium: plotly draws the loss curve, and the page
follows the run live (new points appear without a reload) until it is done."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator import training
from annotator.importing import import_file
from annotator.models import JobStatus, Membership, Project, Role, TrainingRun
from tests.factories import synthetic_traces

pytestmark = pytest.mark.browser


@pytest.fixture
def running(transactional_db, django_user_model, tmp_path):
    import json

    project = Project.objects.create(slug="trained", name="Trained")
    owner = django_user_model.objects.create_user("tess", password="pw-tess-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": t.id,
                    "problem": t.problem,
                    "steps": list(t.steps),
                    "label": t.first_error_step,
                }
            )
            + "\n"
            for t in synthetic_traces(4, 1)
        )
    )
    import_file(project, path, "jsonl")
    run = training.create_training_run(project, owner, kind="qwen-prm", base_model="base")
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, progress_total=4)
    for step, loss in ((1, 0.9), (2, 0.7)):
        training.store_points(run, step, {"loss": loss})
    return project, run


def test_the_run_page_draws_the_loss_curve_and_follows_the_run(running, new_page, live_server):
    project, run = running
    page = new_page("tess", "pw-tess-123")
    page.goto(f"{live_server.url}/p/{project.slug}/training/{run.pk}/")

    curve = page.locator("#training-curve .scatterlayer .trace")
    expect(curve).to_have_count(1)  # plotly drew the loss line
    expect(page.locator("#training-loss")).to_have_text("0.7000")

    for step, loss in ((3, 0.5), (4, 0.4)):
        training.store_points(run, step, {"loss": loss})
    training.store_points(run, 4, {"eval_f1": 80.0})
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE, progress_done=4)

    expect(page.locator("#training-loss")).to_have_text("0.4000")  # polled, no reload
    expect(page.locator("#training-f1")).to_have_text("80.0")
    expect(page.locator("#training-curve .scatterlayer .trace")).to_have_count(2)
    expect(page.locator("#training-status")).not_to_have_attribute("hx-trigger", "every 1s")


CHART_BOXES = """() => {
  const box = el => { const r = el.getBoundingClientRect();
                      return [Math.round(r.width), Math.round(r.height)]; };
  const chart = document.querySelector("#training-curve");
  const button = chart.querySelector(".modebar-btn");
  const xtitle = chart.querySelector(".xtitle").getBoundingClientRect();
  const settings = document.querySelector("section h2").getBoundingClientRect();
  return {chart: box(chart), button: box(button), buttons: chart.querySelectorAll(".modebar-btn").length,
          titleAboveSettings: xtitle.bottom <= settings.top}; }"""


def test_a_polled_refresh_draws_the_chart_as_a_reload_does(running, new_page, live_server):
    project, run = running
    page = new_page("tess", "pw-tess-123")
    url = f"{live_server.url}/p/{project.slug}/training/{run.pk}/"
    page.goto(url)
    expect(page.locator("#training-curve .scatterlayer .trace")).to_have_count(1)

    training.store_points(run, 3, {"loss": 0.5})
    expect(page.locator("#training-loss")).to_have_text("0.5000")  # swapped by the poll
    expect(page.locator("#training-curve .scatterlayer .trace")).to_have_count(1)
    polled = page.evaluate(CHART_BOXES)

    page.reload()
    expect(page.locator("#training-curve .scatterlayer .trace")).to_have_count(1)
    reloaded = page.evaluate(CHART_BOXES)
    assert reloaded["titleAboveSettings"]
    assert polled == reloaded
