"""The dashboard's regions on the demo's data in real Chromium: every region loads with
no console error, and a region whose request fails (the server cannot be reached,
gives no answer in time, or answers an error) says so in place of an endless
"Loading…", with a Retry button that loads it."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from annotator.models import JobStatus, Project, ScoringRun

pytestmark = pytest.mark.browser

PASSWORD = "stepwise-demo"


@pytest.fixture
def demo_project(transactional_db, data_dir, tmp_path):
    """``setup_demo`` on the demo's two files cut to 60 ProcessBench records (labelled)
    and 10 problems' model solutions (best-of-N): the demo's project, its
    ``arithmetic-check`` run and its login."""
    (tmp_path / "processbench-gsm8k").mkdir()
    (tmp_path / "gsm8k").mkdir()
    records = json.loads((data_dir / "processbench-gsm8k" / "gsm8k.json").read_text())[:60]
    (tmp_path / "processbench-gsm8k" / "gsm8k.json").write_text(json.dumps(records))
    with open(data_dir / "gsm8k" / "example_model_solutions.jsonl") as fh:
        lines = [next(fh) for _ in range(10)]
    (tmp_path / "gsm8k" / "example_model_solutions.jsonl").write_text("".join(lines))
    call_command("setup_demo", "--data-dir", str(tmp_path), stdout=io.StringIO())
    project = Project.objects.get(slug="gsm8k-demo")
    return project, ScoringRun.objects.get(project=project, status=JobStatus.DONE)


def _loaded(page) -> None:
    """Every region has been answered: none still waits for its first load."""
    expect(page.locator("[data-region][hx-trigger]")).to_have_count(0, timeout=30_000)


def test_every_region_loads_on_the_demo_data(demo_project, new_page, live_server):
    project, run = demo_project
    page = new_page("demo", PASSWORD)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/p/{project.slug}/dashboard/")
    _loaded(page)
    expect(page.locator("#runs-table table")).to_be_visible()
    expect(page.locator(f"#processbench-{run.pk}")).to_be_visible()
    expect(page.locator(f"#histogram-{run.pk}.js-plotly-plot")).to_be_attached()
    expect(page.locator(f"#best-of-n-{run.pk} table")).to_be_visible()
    expect(page.locator("#annotation")).to_be_visible()
    # A region loaded on demand: the run's disagreements with the humans.
    page.click(f"#run-figures-{run.pk} a[hx-target='#disagreements-{run.pk}']")
    expect(page.locator(f"#disagreements-{run.pk} table")).to_be_visible()
    assert page.locator(".region-error").count() == 0
    assert errors == []


def test_a_region_that_fails_says_why_and_retries(demo_project, new_page, live_server, settings):
    settings.DASHBOARD_REGION_TIMEOUT_S = 2
    project, run = demo_project
    page = new_page("demo", PASSWORD)
    best_of_n = re.compile(rf"/dashboard/runs/{run.pk}/best-of-n/")
    figures = re.compile(rf"/dashboard/runs/{run.pk}/\?")
    answers = {"best-of-n": ["refuse", "hold", "serve"], "figures": ["reopen", "serve"]}
    held = []

    def handle(kind):
        def route(request_route):
            what = answers[kind].pop(0)
            if what == "refuse":
                request_route.abort("connectionrefused")
            elif what == "hold":
                held.append(request_route)  # never answered
            else:
                if what == "reopen":
                    # The run is reopened while its figures are asked for: the server
                    # answers 404 (dashboards show finished runs only).
                    ScoringRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING)
                request_route.continue_()

        return route

    page.route(best_of_n, handle("best-of-n"))
    page.route(figures, handle("figures"))
    page.goto(f"{live_server.url}/p/{project.slug}/dashboard/")
    # An error answer from the server.
    figures_region = page.locator(f"#run-figures-{run.pk}")
    expect(figures_region.locator(".region-error")).to_contain_text(
        "Could not load the figures of arithmetic-check: the server answered 404"
    )
    ScoringRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE)
    region = page.locator(f"#best-of-n-{run.pk}")
    # The server could not be reached.
    expect(region.locator(".region-error")).to_contain_text(
        "Could not load best-of-N of arithmetic-check: the server could not be reached."
    )
    expect(region.locator("h3")).to_have_text("arithmetic-check")
    # No answer in time (the request is held and never answered).
    region.locator("button.retry").click()
    expect(region.locator(".region-error")).to_contain_text("no answer within 2 s")
    assert len(held) == 1
    region.locator("button.retry").click()
    expect(region.locator("table")).to_be_visible()
    expect(region.locator("tbody tr").first).to_contain_text("problems")
    figures_region.locator("button.retry").click()
    expect(page.locator(f"#processbench-{run.pk}")).to_be_visible()
    _loaded(page)

    # A region loaded by a link: its Retry follows the link again.
    first_try = [True]

    def refuse_once(route) -> None:
        if first_try.pop() if first_try else False:
            route.abort("connectionrefused")
        else:
            route.continue_()

    page.route(re.compile(rf"/dashboard/runs/{run.pk}/disagreements/"), refuse_once)
    page.click(f"#run-figures-{run.pk} a[hx-target='#disagreements-{run.pk}']")
    disagreements = page.locator(f"#disagreements-{run.pk}")
    expect(disagreements.locator(".region-error")).to_contain_text(
        "Could not load the disagreements with the humans: the server could not be reached."
    )
    disagreements.locator("button.retry").click()
    expect(disagreements.locator("table")).to_be_visible()
