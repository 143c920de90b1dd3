"""Display formulas in a trace's steps, in real Chromium: one wider than its column
scrolls inside its own box, with a scrollbar, instead of being cut off or widening the
page; consecutive display lines sit close together."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import Membership, Project, Role
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.pages import make_trace

pytestmark = [pytest.mark.browser]

LONG = "$$" + " + ".join(f"x_{{{i}}}^{{2}}" for i in range(120)) + " = 1$$"
STACKED = "So\n$$a + b = c$$\n$$c - b = a$$\nand done."


@pytest.fixture
def overlay_browser(browser):
    """Chromium showing scrollbars (Playwright hides them in headless mode unless told
    not to); its mobile contexts have overlay scrollbars, as phones and macOS do: they
    take no room and show only while scrolling, which is how a cut formula looked whole."""
    launched = browser.browser_type.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--hide-scrollbars"]
    )
    yield launched
    launched.close()


@pytest.fixture
def shown(transactional_db, django_user_model, overlay_browser, live_server):
    project = Project.objects.create(slug="maths", name="Maths")
    owner = django_user_model.objects.create_user("ola", password="pw-ola-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    trace = make_trace(project, "long", [f"Expand:\n{LONG}\nso it holds.", STACKED])
    context = overlay_browser.new_context(
        viewport={"width": 800, "height": 900}, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "ola")
    page.fill("#id_password", "pw-ola-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/p/{project.slug}/traces/{trace.pk}/")
    expect(page.locator("#step-0 .katex-display")).to_have_count(1)
    yield page
    context.close()


def test_a_long_display_formula_scrolls_inside_its_step(shown):
    box = shown.evaluate(
        """() => { const d = document.querySelector("#step-0 .katex-display");
                   const step = document.querySelector("#step-0").getBoundingClientRect();
                   const r = d.getBoundingClientRect();
                   return {scroll: d.scrollWidth, client: d.clientWidth,
                           overflow: getComputedStyle(d).overflowX,
                           scrollbar: d.offsetHeight - d.clientHeight,
                           left: r.left, right: r.right, stepLeft: step.left,
                           stepRight: step.right,
                           page: document.documentElement.scrollWidth,
                           viewport: document.documentElement.clientWidth}; }"""
    )
    assert box["overflow"] == "auto"
    assert box["scroll"] > box["client"]  # wider than its box: it scrolls
    assert box["scrollbar"] > 0  # a scrollbar that takes room: it shows without a touch
    assert box["stepLeft"] <= box["left"] and box["right"] <= box["stepRight"]
    assert box["page"] <= box["viewport"]  # the page itself does not scroll sideways


def test_display_lines_sit_close_together(shown):
    gaps = shown.evaluate(
        """() => { const [a, b] = document.querySelectorAll("#step-1 .katex-display");
                   const size = parseFloat(getComputedStyle(a).fontSize);
                   return {gap: b.getBoundingClientRect().top - a.getBoundingClientRect().bottom,
                           size}; }"""
    )
    assert gaps["gap"] < gaps["size"]  # less than one line between two display lines
