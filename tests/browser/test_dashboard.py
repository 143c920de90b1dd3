"""The dashboard and a trace page in real Chromium: every chart loads as a partial and
draws data with the bundled plotly.js, and the console stays free of errors."""

from __future__ import annotations

import io
import json
import random

import pytest
from playwright.sync_api import expect

from annotator import runs
from annotator.importing import import_file
from annotator.models import Membership, Project, Role, Trace
from tests.factories import dashboard_records, score_file

pytestmark = pytest.mark.browser

CHARTS = ("histogram", "sweep", "roc", "calibration", "confusion")


@pytest.fixture
def dashboard_project(transactional_db, django_user_model, tmp_path):
    project = Project.objects.create(slug="dash", name="Dash")
    reviewer = django_user_model.objects.create_user("rhea", password="pw-rhea-123")
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    rng = random.Random(3)
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in dashboard_records(rng)) + "\n")
    import_file(project, path, "jsonl")
    traces = list(Trace.objects.filter(project=project).order_by("id"))
    made = [
        runs.import_scores(
            project,
            io.BytesIO(score_file(traces, rng, with_nan=False)),
            "scores.jsonl",
            name=name,
            user=reviewer,
        )
        for name in ("prm-a", "prm-b")
    ]
    return project, made, traces


def _watch_console(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _points(page, div_id: str) -> int:
    """Data points plotly drew in the chart ``div_id`` (its graph div's ``data``)."""
    return page.evaluate(
        """id => (document.getElementById(id).data || [])
                   .reduce((n, trace) => n + ((trace.y || trace.x || []).length), 0)""",
        div_id,
    )


def test_the_dashboard_and_a_trace_page_draw_their_charts(dashboard_project, new_page, live_server):
    project, made, traces = dashboard_project
    page = new_page("rhea", "pw-rhea-123")
    errors = _watch_console(page)
    page.goto(f"{live_server.url}/p/{project.slug}/dashboard/")
    expect(page.locator("#runs-table table")).to_be_visible()
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    for run in made:
        for name in CHARTS:
            chart = page.locator(f"#{name}-{run.pk}.js-plotly-plot")
            expect(chart).to_be_attached()
            assert _points(page, f"{name}-{run.pk}") > 0, (run.name, name)
    # Best-of-N: one table per run, each loaded as its own partial, side by side.
    for run in made:
        table = page.locator(f"#best-of-n-{run.pk} table")
        expect(table).to_be_visible()
        expect(table.locator("thead th").nth(1)).to_have_text(run.name)
        expect(table.locator("tbody tr").first).to_contain_text("problems")
    boxes = [page.locator(f"#best-of-n-{run.pk}").bounding_box() for run in made]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"], boxes
    # The page's only scripts are ours: plotly comes from the package's static files.
    sources = page.eval_on_selector_all("script[src]", "nodes => nodes.map(n => n.src)")
    assert all(src.startswith(live_server.url) for src in sources), sources

    page.goto(f"{live_server.url}/p/{project.slug}/traces/{traces[0].pk}/")
    expect(page.locator("#trace-score-chart-plot.js-plotly-plot")).to_be_attached()
    assert _points(page, "trace-score-chart-plot") == 2 * traces[0].num_steps
    assert errors == []


def _overflowing(page) -> list[str]:
    """Elements whose right edge passes the viewport's: what makes the page scroll sideways."""
    return page.evaluate(
        """() => [...document.querySelectorAll('body *')]
             .filter(el => el.getBoundingClientRect().right > window.innerWidth + 0.5
                           && !el.closest('.table-scroll, .js-plotly-plot'))
             .map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className)
             .slice(0, 10)"""
    )


def test_the_dashboard_fits_a_390_px_screen(dashboard_project, new_page, live_server, tmp_path):
    """At 390 px the page was 641 px wide with its tables cut: now nothing scrolls
    sideways, and each wide table scrolls inside its own box (a screenshot is kept)."""
    project, made, _ = dashboard_project
    page = new_page("rhea", "pw-rhea-123")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/p/{project.slug}/dashboard/")
    expect(page.locator("#runs-table table")).to_be_visible()
    for run in made:
        expect(page.locator(f"#processbench-{run.pk}")).to_be_visible()
        expect(page.locator(f"#best-of-n-{run.pk} table")).to_be_visible()
        expect(page.locator(f"#histogram-{run.pk}.js-plotly-plot")).to_be_attached()
    page.screenshot(path=tmp_path / "dashboard-390.png", full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, (width, _overflowing(page))
    assert _overflowing(page) == []
    # The runs table is wider than the screen: its own box scrolls, the whole table
    # inside it (not cut).
    box = page.locator("#runs-table .table-scroll")
    sizes = box.evaluate("el => [el.scrollWidth, el.clientWidth, getComputedStyle(el).overflowX]")
    assert sizes[0] > sizes[1] and sizes[2] == "auto", sizes
    assert box.bounding_box()["width"] <= 390


# Per column of a table: the text's left and right edges in its header cell and in each
# body cell (a Range around the cell's contents, so padding and alignment count).
_COLUMN_TEXT_EDGES = """table => {
  const edges = cell => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    const box = range.getBoundingClientRect();
    return [box.left, box.right];
  };
  const head = [...table.querySelectorAll('thead th')].map(edges);
  const body = [...table.querySelectorAll('tbody tr')].map(
    row => [...row.querySelectorAll('td')].map(edges));
  return head.map((h, i) => ({head: h, cells: body.map(row => row[i])}));
}"""


def test_best_of_n_tables_share_the_page_and_line_up_their_headers(
    dashboard_project, new_page, live_server, tmp_path
):
    """The tables took half the page (empty grid tracks beside them) and the figures sat
    unaligned under their headers: now the runs share the width, the rule column's
    header and names start at one edge, and each figure column's header and numbers end
    at one edge (a screenshot is kept)."""
    project, made, _ = dashboard_project
    page = new_page("rhea", "pw-rhea-123")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/p/{project.slug}/dashboard/")
    tables = [page.locator(f"#best-of-n-{run.pk} table") for run in made]
    for table in tables:
        expect(table).to_be_visible()
    page.screenshot(path=tmp_path / "best-of-n-1280.png", full_page=True)
    grid = page.locator("#best-of-n").bounding_box()
    boxes = [page.locator(f"#best-of-n-{run.pk}").bounding_box() for run in made]
    assert boxes[-1]["x"] + boxes[-1]["width"] >= grid["x"] + grid["width"] - 1, (grid, boxes)
    for table in tables:
        columns = table.evaluate(_COLUMN_TEXT_EDGES)
        assert len(columns) == 2
        rule, figures = columns
        assert all(abs(cell[0] - rule["head"][0]) < 1 for cell in rule["cells"]), rule
        assert all(abs(cell[1] - figures["head"][1]) < 1 for cell in figures["cells"]), figures
