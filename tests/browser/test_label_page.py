"""The Label page in real Chromium: the flag keys toggle from the keyboard, and the
page reads on a phone (390 px) as on a desktop."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import Annotation, Membership, Project, Role
from tests.browser.pages import make_trace, press, showing

pytestmark = [pytest.mark.browser]


@pytest.fixture
def desk(transactional_db, django_user_model):
    project = Project.objects.create(slug="desk", name="Desk", annotators_per_trace=2)
    ann = django_user_model.objects.create_user("ann", password="pw-ann-123")
    Membership.objects.create(project=project, user=ann, role=Role.ANNOTATOR)
    return project, ann


def test_the_same_flag_key_again_clears_the_flag(desk, new_page, live_server):
    """The first b focused the reason box, so the second b was typed into it."""
    project, ann = desk
    trace = make_trace(project, "t0", ["One.", "Two.", "Three."])
    page = new_page("ann", "pw-ann-123")
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    press(page, "Enter")
    showing(page, trace)
    flag, reason = page.locator("#flag"), page.locator("#flag-reason")
    press(page, "b")
    expect(flag).to_have_value("bad_problem")
    expect(reason).to_be_focused()
    press(page, "b")  # the same key again: cleared, and the keys go back to the steps
    expect(flag).to_have_value("")
    expect(reason).to_have_value("")
    expect(page.locator("#flag-box")).not_to_have_class("flag flagged")
    expect(page.locator(".label-steps .step.focused")).to_be_focused()
    press(page, "b", "g")  # another flag key switches to its flag
    expect(flag).to_have_value("gave_up")
    expect(reason).to_have_value("")
    page.keyboard.type("Gone on too long g")  # once a reason is typed, every key is text
    expect(flag).to_have_value("gave_up")
    expect(reason).to_have_value("Gone on too long g")
    press(page, "Enter")
    expect(page.get_by_text("Nothing left to label")).to_be_visible()
    label = Annotation.objects.get(annotator=ann)
    assert (label.gave_up, label.bad_problem, label.first_error_step) == (True, False, None)
    assert label.flag_reason == "Gone on too long g"


STEPS = [
    "Natalia sold 48 clips in April, and half as many in May: $48 / 2 = 24$ clips in May.",
    "Altogether she sold $48 + 24 = 72$ clips in April and May, so the answer is 72 clips.",
    "Check: each month's count is a whole number, and May's is half of April's, as stated.",
    "So the total is $\\boxed{72}$, which answers the question the problem asks about clips.",
]


def _layout(page) -> dict:
    return page.evaluate(
        """() => ({
             scrollWidth: document.documentElement.scrollWidth,
             innerWidth: window.innerWidth,
             textWidths: [...document.querySelectorAll('.label-steps .step-text')]
               .map(e => e.getBoundingClientRect().width),
           })"""
    )


def _covered_controls(page) -> list[str]:
    """The focused step's rating buttons and first-error choice in the viewport that
    something else (the sticky problem) covers, at their centres."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
                    '.label-steps .step.focused .rate label, .label-steps .step.focused .fe')]
             .filter(el => {
               const r = el.getBoundingClientRect();
               const x = r.x + r.width / 2, y = r.y + r.height / 2;
               if (y < 0 || y > window.innerHeight) return false;
               const hit = document.elementFromPoint(x, y);
               return !(hit && el.contains(hit));
             }).map(el => el.textContent.trim())"""
    )


@pytest.mark.parametrize("width", [390, 1280])
def test_the_label_page_reads_at_phone_and_desktop_widths(
    desk, new_page, live_server, width, tmp_path
):
    """At 390 px the step text was 0 px wide (a character a line), the page scrolled
    sideways and the sticky problem covered the rating buttons."""
    project, _ = desk
    problem = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May? " * 3  # fmt: skip
    trace = make_trace(project, "t0", STEPS, problem_text=problem)
    page = new_page("ann", "pw-ann-123")
    page.set_viewport_size({"width": width, "height": 844 if width == 390 else 900})
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    press(page, "Enter")
    showing(page, trace)
    # Measured once the formulas are drawn: KaTeX changes the steps' heights.
    expect(page.locator(".label-steps .step-text .katex")).to_have_count(3)  # steps 0, 1 and 3
    try:
        layout = _layout(page)
        assert layout["scrollWidth"] <= layout["innerWidth"], layout
        assert len(layout["textWidths"]) == len(STEPS)
        assert min(layout["textWidths"]) >= 250, layout
        # Down the steps and back up (the way back scrolls each step to the top, under
        # the sticky problem): every rating button of the focused step can be pressed.
        for key in ["j"] * (len(STEPS) - 1) + ["k"] * (len(STEPS) - 1):
            covered = _covered_controls(page)
            assert covered == [], (key, covered)
            press(page, key)
        assert _covered_controls(page) == []
        controls = page.locator(".rate label")
        for i in range(controls.count()):
            box = controls.nth(i).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, i
    except AssertionError as failed:
        shot = tmp_path / f"label-page-{width}.png"  # kept: pytest keeps its last runs
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{failed} (screenshot: {shot})") from failed
