"""The annotation workspace as people use it, in real Chromium.

Annotator A labels three traces with the keyboard only, undoes one and changes it;
annotator B labels the same traces and differs on one; a reviewer sees exactly that
disagreement, adjudicates it, and reads agreement figures that this test computes
on its own from the labels it entered.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from playwright.sync_api import expect

from annotator.models import (
    Annotation,
    AnnotationKind,
    Membership,
    Project,
    Role,
)
from tests.browser.pages import make_trace, press, showing

pytestmark = [pytest.mark.browser]


@pytest.fixture
def team(transactional_db, django_user_model):
    project = Project.objects.create(slug="flow", name="Flow", annotators_per_trace=2)
    people = {}
    for name, role in (("ann", Role.ANNOTATOR), ("bob", Role.ANNOTATOR), ("rev", Role.REVIEWER)):
        people[name] = django_user_model.objects.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(project=project, user=people[name], role=role)
    traces = [
        make_trace(project, "t0", ["\\(2 \\cdot 2 = 4\\)", "4 + 4 = 8", "8 - 1 = 6", "So 6."]),
        make_trace(project, "t1", ["Two squared is 4.", "Doubled, 8.", "Answer: 8."]),
        make_trace(project, "t2", ["Start with 2.", "Square: 4.", "Cube: 8."]),
    ]
    return project, people, traces


def labels_of(user, kind=AnnotationKind.LABEL):
    return {
        a.trace.external_id: (a.first_error_step, a.step_ratings)
        for a in Annotation.objects.filter(
            annotator=user, kind=kind, is_latest=True
        ).select_related("trace")
    }


# Independent arithmetic for two raters with no missing labels.
def kappa(a, b):
    n = len(a)
    p_o = Fraction(sum(x == y for x, y in zip(a, b, strict=True)), n)
    ca, cb = Counter(a), Counter(b)
    p_e = Fraction(sum(ca[c] * cb[c] for c in set(a) | set(b)), n * n)
    return (p_o - p_e) / (1 - p_e)


def alpha(a, b):
    values = list(a) + list(b)
    n = len(values)
    d_o = Fraction(2 * sum(x != y for x, y in zip(a, b, strict=True)), n)
    d_e = Fraction(n * n - sum(c * c for c in Counter(values).values()), n * (n - 1))
    return 1 - d_o / d_e


def test_it_labels_reviews_and_measures_agreement(team, new_page, live_server):
    project, people, (t0, t1, t2) = team
    annotate = f"{live_server.url}/p/{project.slug}/annotate/"

    # --- annotator A, keyboard only
    a = new_page("ann", "pw-ann-123")
    a.goto(annotate)
    expect(a.locator("#start")).to_be_visible()  # a GET holds nothing
    press(a, "Enter")  # start: claims the first trace
    showing(a, t0)
    expect(a.locator("#step-0 .katex").first).to_be_visible()  # math rendered by KaTeX
    press(a, "j", "j", "e", "Enter")  # first error at step 2
    showing(a, t1)
    assert a.url.endswith(f"/annotate/{t1.pk}/")  # swapped in by htmx, URL pushed
    press(a, "c", "Enter")  # all correct
    showing(a, t2)
    press(a, "3", "2", "1", "Enter")  # per step: +1, 0, -1
    expect(a.get_by_text("Nothing left to label")).to_be_visible()
    assert labels_of(people["ann"])["t2"] == (2, [1, 0, -1])
    press(a, "u")  # undo brings t2 back, editable
    showing(a, t2)
    expect(a.get_by_text("editing your submission (version 1)")).to_be_visible()
    press(a, "j", "j", "3", "Enter")  # step 2 is fine after all: all correct
    expect(a.get_by_text("Nothing left to label")).to_be_visible()
    assert labels_of(people["ann"]) == {
        "t0": (2, [1, 1, -1, None]),
        "t1": (-1, [1, 1, 1]),
        "t2": (-1, [1, 0, 1]),
    }
    assert Annotation.objects.filter(annotator=people["ann"], trace=t2).count() == 2
    shortcuts = a.locator("#shortcuts")
    press(a, "?")
    expect(shortcuts).to_be_visible()
    press(a, "Escape")
    expect(shortcuts).to_be_hidden()

    # --- annotator B differs on t2 only
    b = new_page("bob", "pw-bob-123")
    b.goto(annotate)
    press(b, "Enter")
    showing(b, t0)
    expect(b.get_by_text("editing your submission")).to_have_count(0)  # blind to A
    press(b, "ArrowDown", "ArrowDown", "e", "Enter")
    showing(b, t1)
    press(b, "c", "Enter")
    showing(b, t2)
    press(b, "j", "e", "Enter")
    expect(b.get_by_text("Nothing left to label")).to_be_visible()
    assert labels_of(people["bob"]) == {
        "t0": (2, [1, 1, -1, None]),
        "t1": (-1, [1, 1, 1]),
        "t2": (1, [1, -1, None]),
    }
    assert all(t.seconds_spent is not None for t in Annotation.objects.all())

    # --- reviewer: exactly that disagreement, adjudicated
    r = new_page("rev", "pw-rev-123")
    r.goto(f"{live_server.url}/p/{project.slug}/review/")
    rows = r.locator("#disagreements tbody tr[data-trace-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-trace-id", str(t2.pk))
    expect(rows.first.locator('[data-labeller="ann"]')).to_have_attribute("data-first-error", "-1")
    expect(rows.first.locator('[data-labeller="bob"]')).to_have_attribute("data-first-error", "1")
    rows.first.get_by_role("link", name="t2").click()
    expect(r.locator("#side-by-side")).to_be_visible()
    r.select_option("#adjudicate-first-error", "1")
    r.click("#adjudicate")
    expect(r.locator("#disagreements tbody tr[data-trace-id]")).to_have_count(0)
    adjudication = Annotation.objects.get(kind=AnnotationKind.ADJUDICATION)
    assert (adjudication.trace_id, adjudication.first_error_step) == (t2.pk, 1)

    # --- agreement figures equal our own arithmetic
    ann = [2, -1, -1]
    bob = [2, -1, 1]
    exact = Fraction(sum(x == y for x, y in zip(ann, bob, strict=True)), 3)
    # Steps judged by both: t0 three (all equal), t1 three (equal), t2 steps 0 and 1 (one equal).
    steps = Fraction(3 + 3 + 1, 3 + 3 + 2)
    r.goto(f"{live_server.url}/p/{project.slug}/agreement/")
    expect(r.locator("#exact-agreement")).to_have_text(f"{float(exact):.3f}")
    expect(r.locator("#krippendorff-alpha")).to_have_text(f"{float(alpha(ann, bob)):.3f}")
    expect(r.locator("#step-agreement")).to_have_text(f"{float(steps):.3f}")
    pair = r.locator('#pairs tr[data-pair="ann|bob"]')
    expect(pair.locator(".kappa")).to_have_text(f"{float(kappa(ann, bob)):.3f}")
    expect(pair.locator(".exact")).to_have_text(f"{float(exact):.3f}")
    assert (f"{float(kappa(ann, bob)):.3f}", f"{float(alpha(ann, bob)):.3f}") == ("0.500", "0.545")


def test_it_shows_hostile_step_text_as_text(team, new_page, live_server):
    project, people, _ = team
    script, img = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"
    trace = make_trace(project, "xss", [script, img, "$x$ <b>bold</b>"], problem_text=img + script)
    page = new_page("ann", "pw-ann-123")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/{trace.pk}/")
    expect(page.locator("#read-only")).to_be_visible()  # opened by link: not held yet
    press(page, "Enter")  # claim it
    showing(page, trace)
    expect(page.locator("#step-0 .step-text")).to_have_text(script)
    expect(page.locator("#step-1 .step-text")).to_have_text(img)
    expect(page.locator(".workspace .problem p").first).to_have_text(img + script)
    assert page.locator("#workspace img").count() == 0
    assert page.locator("#workspace script").count() == 0
    # Labelling it (an htmx swap) and coming back renders it the same way.
    press(page, "c", "Enter")
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/{trace.pk}/")
    expect(page.locator("#step-1 .step-text")).to_have_text(img)
    page.wait_for_timeout(300)
    assert dialogs == []
