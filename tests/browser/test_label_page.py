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
