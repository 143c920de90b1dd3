"""The "Solve or verify" page in real Chromium: the figure loads as a partial and plotly.js
draws every curve on a log2 compute axis, the runs' pages poll without errors, and the
console stays free of errors throughout."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import Membership, Project, Role
from tests.factories import solved_runs

pytestmark = pytest.mark.browser


@pytest.fixture
def solve_project(transactional_db, django_user_model):
    project = Project.objects.create(slug="solve", name="Solve")
    reviewer = django_user_model.objects.create_user("rhea", password="pw-rhea-123")
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    return project, *solved_runs(project, reviewer, problems=6, n=8, v=4)


def test_the_page_draws_each_method_on_a_log2_axis(solve_project, new_page, live_server) -> None:
    project, sampling_run, check = solve_project
    page = new_page("rhea", "pw-rhea-123")
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/p/{project.slug}/solve/curves/")
    page.select_option("#solve-sampling", str(sampling_run.pk))
    page.select_option("#solve-verification", str(check.pk))
    page.click("#solve-show")
    chart = page.locator("#solve-chart.js-plotly-plot")
    expect(chart).to_be_attached()
    drawn = page.evaluate(
        """() => {
            const div = document.getElementById('solve-chart');
            return {names: div.data.map(t => t.name), points: div.data.map(t => t.x.length),
                    axis: div.layout.xaxis.type};
        }"""
    )
    assert drawn["names"] == ["Self-consistency"] + [f"GenRM-Base, V = {v}" for v in (1, 2, 4)]
    assert drawn["points"] == [4, 4, 4, 4] and drawn["axis"] == "log"
    expect(page.locator("#solve-table tbody tr")).to_have_count(16)
    expect(page.locator("#solve-crossover")).to_contain_text("6 problems")
    for url in (
        f"/p/{project.slug}/solve/",
        f"/p/{project.slug}/solve/sampling/{sampling_run.pk}/",
        f"/p/{project.slug}/solve/verification/{check.pk}/",
    ):
        page.goto(live_server.url + url)
        expect(page.locator("h1")).to_be_visible()
    assert errors == []


def test_laser_curves_and_self_verification_draw_without_errors(
    solve_project, new_page, live_server
) -> None:
    import random

    from tests.annotator.test_solve_laser import laser_run

    project, sampling_run, _ = solve_project
    run, _ = laser_run(project, sampling_run, random.Random(5))
    page = new_page("rhea", "pw-rhea-123")
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(
        f"{live_server.url}/p/{project.slug}/solve/curves/"
        f"?sampling={sampling_run.pk}&scoring={run.pk}"
    )
    expect(page.locator("#solve-chart.js-plotly-plot")).to_be_attached()
    names = page.evaluate("() => document.getElementById('solve-chart').data.map(t => t.name)")
    assert names == [
        "Self-consistency",
        "LaSeR laser-self best-of-N",
        "LaSeR laser-self weighted SC",
    ]
    expect(page.locator("#solve-self-verification tbody tr")).to_have_count(2)
    assert errors == []
