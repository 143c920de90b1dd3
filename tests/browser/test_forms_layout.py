"""Forms and page heads in real Chromium: an error about the whole score form sits in
a row of its own above the fields instead of pushing them aside, and the project's
title keeps clear of its buttons."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import Membership, Project, Role, Scorer
from tests.browser.pages import make_trace

pytestmark = [pytest.mark.browser]


@pytest.fixture
def owned(transactional_db, django_user_model):
    project = Project.objects.create(slug="forms", name="A project with a long enough name")
    owner = django_user_model.objects.create_user("fay", password="pw-fay-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    make_trace(project, "t0", ["One.", "Two."])
    Scorer.objects.create(name="arith", adapter="arithmetic-check")
    return project


def test_a_score_form_error_takes_its_own_row(owned, new_page, live_server):
    page = new_page("fay", "pw-fay-123")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/p/{owned.slug}/runs/")
    page.fill("#score-traces [name=ids]", "999999999")
    page.click("#start-run")
    expect(page.locator("#score-error")).to_contain_text("the selection holds no traces")
    boxes = page.evaluate(
        """() => { const r = s => document.querySelector(s).getBoundingClientRect();
                   const fields = [...document.querySelectorAll("#score-traces .field")]
                     .map(f => f.getBoundingClientRect());
                   return {form: r("#score-traces"), error: r("#score-error"),
                           fieldTops: fields.map(f => f.top),
                           fieldLefts: fields.map(f => f.left)}; }"""
    )
    assert boxes["error"]["width"] == pytest.approx(boxes["form"]["width"], abs=1)
    assert min(boxes["fieldTops"]) >= boxes["error"]["bottom"]  # the fields below it
    assert min(boxes["fieldLefts"]) == pytest.approx(boxes["form"]["left"], abs=1)


def test_the_project_title_keeps_clear_of_its_buttons(owned, new_page, live_server):
    page = new_page("fay", "pw-fay-123")
    for width in (1280, 800, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/p/{owned.slug}/")
        gap = page.evaluate(
            """() => { const h = document.querySelector(".project-head h1").getBoundingClientRect();
                       const links = [...document.querySelectorAll(".project-head .actions a")]
                         .map(a => a.getBoundingClientRect());
                       // the nearest link on the title's own rows, else the rows below
                       const beside = links.filter(a => a.top < h.bottom && a.bottom > h.top);
                       return beside.length ? Math.min(...beside.map(a => a.left)) - h.right
                                            : Math.min(...links.map(a => a.top)) - h.bottom; }"""
        )
        assert gap >= 8, width
