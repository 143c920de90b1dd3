"""The Rewards page in real Chromium: a 200-rollout run logged as the reward service logs
it, its charts drawn by plotly, its hacking suspects listed, one of them opened on the
Label page, and no console error on the way."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import Membership, Project, Role, Trace
from annotator.rollouts import log_rollouts
from tests.factories import rollout_records

pytestmark = pytest.mark.browser


@pytest.fixture
def logged(transactional_db, django_user_model):
    project = Project.objects.create(slug="rl", name="RL run")
    owner = django_user_model.objects.create_user("rhea", password="pw-rhea-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    records = rollout_records(200)
    assert log_rollouts(project.slug, records[:120]) == 120
    assert log_rollouts(project.slug, records[100:]) == 80  # a retried batch overlaps
    return project


def test_the_rewards_page_shows_the_logged_rollouts(logged, new_page, live_server):
    project = logged
    page = new_page("rhea", "pw-rhea-123")
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.click("#rewards-link")
    expect(page.locator("h1")).to_have_text("Rewards")
    expect(page.locator("#rollout-count")).to_contain_text("200 rollouts")
    charts = page.locator("#reward-charts .js-plotly-plot")
    expect(charts).to_have_count(3)
    # One line per transform in each chart, drawn.
    for i in range(3):
        expect(charts.nth(i).locator(".scatterlayer .trace")).to_have_count(2)
    suspects = page.locator("#hacking-suspects table.suspects")
    expect(suspects).to_have_count(2)  # high return with a wrong answer; repeated steps
    repeats = suspects.nth(1).locator("tbody tr")
    expect(repeats).to_have_count(40)  # every fifth rollout repeats its first step

    # The filter narrows every region to one transform.
    page.select_option("select[name=transform]", "min/v1")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#reward-charts .js-plotly-plot")).to_have_count(3)
    expect(
        page.locator("#reward-charts .js-plotly-plot").first.locator(".scatterlayer .trace")
    ).to_have_count(1)
    expect(page.locator("#hacking-suspects td", has_text="clip-delta/v1")).to_have_count(0)

    # A suspect opens on the Label page, where a human marks the first wrong step.
    link = page.locator("#hacking-suspects table.suspects").last.locator("tbody a").first
    external_id = link.inner_text()
    link.click()
    trace = Trace.objects.get(project=project, external_id=external_id)
    expect(page.locator("#workspace")).to_have_attribute("data-trace-id", str(trace.pk))
    assert errors == []
