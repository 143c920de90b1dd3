"""Review: disagreements, adjudication (used by exports), accept/reject, send back,
gold questions and the history of a trace."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotator.exporting import iter_export
from annotator.labelling import CHOOSE_FIRST_ERROR, Label, normalise_label, submit_label
from annotator.models import (
    Annotation,
    AnnotationKind,
    Membership,
    Review,
    ReviewDecision,
    Role,
    Verdict,
)
from tests.factories import HTMX, make_trace


@pytest.fixture
def bea(project, django_user_model):
    user = django_user_model.objects.create_user("bea")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture
def labelled(project, users, bea):
    """Three traces labelled by alan and bea; they disagree on the second only."""
    project.annotators_per_trace = 2
    project.save()
    traces = [make_trace(project, 3, ext=f"t{i}") for i in range(3)]
    alan = users["annotator"]
    for trace, (a, b) in zip(traces, [(1, 1), (-1, 2), (0, 0)], strict=True):
        submit_label(project, trace, alan, normalise_label(3, project.label_scheme, a, [None] * 3))
        submit_label(project, trace, bea, normalise_label(3, project.label_scheme, b, [None] * 3))
    return traces


def test_it_lists_exactly_the_disagreements(project, users, labelled, client_for):
    response = client_for(users["reviewer"]).get(reverse("review", args=[project.slug]))
    assert response.status_code == 200
    assert [row.trace.pk for row in response.context["rows"]] == [labelled[1].pk]
    assert response.context["rows"][0].labels == [("alan", -1), ("bea", 2)]
    assert b'data-labeller="alan" data-first-error="-1"' in response.content


def test_it_shows_labels_side_by_side(project, users, labelled, client_for):
    url = reverse("review-trace", args=[project.slug, labelled[1].pk])
    response = client_for(users["reviewer"]).get(url)
    assert response.status_code == 200
    names = [c["name"] for c in response.context["columns"]]
    assert names == ["alan", "bea"]
    rows = response.context["step_rows"]
    assert rows[2][2] == [(1, False, "alan"), (-1, True, "bea")]  # alan: all correct; bea: 2
    assert [row[3] for row in rows] == ["agrees", "agrees", "disagrees"]
    # Each rating cell sits in its annotator's column, and says whether they agree.
    html = response.content.decode()
    header = re.findall(r'<th class="who"[^>]*data-labeller="(\w+)"', html)
    step_row = re.search(r'<tr data-step="2">.*?</tr>', html, re.S).group()
    assert re.findall(r'<td class="cell-rating[^"]*" data-labeller="(\w+)"', step_row) == header
    assert "✗ disagrees" in step_row
    assert 'class="rating' not in html  # the inline-block badge style stays off table cells


def test_the_review_page_shows_the_verdict_exports_use(project, users, labelled, client_for):
    client = client_for(users["reviewer"])
    trace = labelled[1]
    url = reverse("review-trace", args=[project.slug, trace.pk])
    verdict = client.get(url).context["verdict"]
    assert verdict.disagreement and not verdict.is_labelled
    client.post(
        reverse("review-adjudicate", args=[project.slug, trace.pk]), {"first_error_step": "2"}
    )
    page = client.get(url)
    assert page.context["verdict"] == Verdict(2, [1, 1, -1], AnnotationKind.ADJUDICATION)
    assert b"first error at step 2" in page.content
    agreed = client.get(reverse("review-trace", args=[project.slug, labelled[0].pk]))
    assert agreed.context["verdict"].kind == AnnotationKind.LABEL
    assert b"first error at step 1" in agreed.content


def test_it_adjudicates_and_exports_use_it(project, users, labelled, client_for):
    trace = labelled[1]
    before = {r["id"]: r for r in iter_export(project, "processbench")}
    assert trace.external_id not in before  # a disagreement is left out
    client = client_for(users["reviewer"])
    url = reverse("review-adjudicate", args=[project.slug, trace.pk])
    response = client.post(url, {"first_error_step": "2", "note": "step 2 divides by zero"})
    assert response.status_code == 302
    adjudication = Annotation.objects.get(kind=AnnotationKind.ADJUDICATION)
    assert (adjudication.trace, adjudication.annotator) == (trace, users["reviewer"])
    assert adjudication.first_error_step == 2 and adjudication.step_ratings == [1, 1, -1]
    after = {r["id"]: r for r in iter_export(project, "processbench")}
    assert after[trace.external_id]["label"] == 2
    listed = client.get(reverse("review", args=[project.slug])).context["rows"]
    assert listed == []  # adjudicated: off the open list
    everything = client.get(reverse("review", args=[project.slug]), {"show": "all"})
    assert [row.trace.pk for row in everything.context["rows"]] == [trace.pk]
    # A second adjudication is a new version, the old one stays in the history.
    client.post(url, {"first_error_step": "-1"})
    versions = Annotation.objects.filter(kind=AnnotationKind.ADJUDICATION).order_by("version")
    assert [(a.version, a.is_latest) for a in versions] == [(1, False), (2, True)]


def test_adjudicate_and_gold_start_with_no_choice_and_refuse_none(
    project, users, labelled, client_for
):
    """Both forms defaulted to "all steps correct": one press stored a verdict."""
    client = client_for(users["reviewer"])
    trace = labelled[1]
    page = client.get(reverse("review-trace", args=[project.slug, trace.pk])).content.decode()
    for select_id in ("adjudicate-first-error", "gold-first-error"):
        select = re.search(rf'<select [^>]*id="{select_id}"[^>]*>(.*?)</select>', page, re.S)
        options = re.findall(r'<option value="([^"]*)"( selected)?', select.group(1))
        assert [value for value, selected in options if selected] == [""], select_id
        assert options[0] == ("", " selected") and ("-1", "") in options
    adjudicate = reverse("review-adjudicate", args=[project.slug, trace.pk])
    refused = client.post(adjudicate, {"first_error_step": "", "note": "x"})
    assert refused.status_code == 422
    assert CHOOSE_FIRST_ERROR in refused.content.decode()
    gold = reverse("mark-gold", args=[project.slug, trace.pk])
    shown = client.post(gold, {"first_error_step": ""}, follow=True)
    assert CHOOSE_FIRST_ERROR in shown.content.decode()
    trace.refresh_from_db()
    assert not trace.is_gold
    assert not Annotation.objects.filter(
        kind__in=[AnnotationKind.ADJUDICATION, AnnotationKind.GOLD]
    ).exists()


def test_a_second_reviewers_verdict_replaces_the_first(
    project, users, labelled, client_for, django_user_model
):
    trace = labelled[1]
    other = django_user_model.objects.create_user("rex")
    Membership.objects.create(project=project, user=other, role=Role.REVIEWER)
    url = reverse("review-adjudicate", args=[project.slug, trace.pk])
    client_for(users["reviewer"]).post(url, {"first_error_step": "0"})
    client_for(other).post(url, {"first_error_step": "2"})
    latest = Annotation.objects.filter(kind=AnnotationKind.ADJUDICATION, is_latest=True)
    assert [(a.annotator.username, a.first_error_step, a.version) for a in latest] == [
        ("rex", 2, 2)
    ]
    page = client_for(users["reviewer"]).get(reverse("review-trace", args=[project.slug, trace.pk]))
    assert page.context["adjudication"].first_error_step == 2
    assert {r["id"]: r["label"] for r in iter_export(project, "processbench")}[
        trace.external_id
    ] == 2
    # Gold labels likewise: one reference answer per trace, the newest.
    gold = reverse("mark-gold", args=[project.slug, labelled[0].pk])
    client_for(users["reviewer"]).post(gold, {"first_error_step": "1"})
    client_for(other).post(gold, {"first_error_step": "-1"})
    golds = Annotation.objects.filter(trace=labelled[0], kind=AnnotationKind.GOLD, is_latest=True)
    assert [a.first_error_step for a in golds] == [-1]


def test_it_accepts_and_rejects_single_annotations(project, users, labelled, client_for):
    annotation = Annotation.objects.get(trace=labelled[1], annotator__username="bea")
    client = client_for(users["reviewer"])
    url = reverse("review-annotation", args=[project.slug, annotation.pk])
    assert client.post(url, {"decision": "reject", "comment": "step 2 is fine"}).status_code == 302
    assert client.post(url, {"decision": "maybe"}).status_code == 400
    review = Review.objects.get()
    assert (review.decision, review.reviewer, review.comment) == (
        ReviewDecision.REJECT,
        users["reviewer"],
        "step 2 is fine",
    )


def test_it_sends_a_trace_back_to_its_annotators(project, users, bea, labelled, client_for):
    trace = labelled[1]
    reviewer = client_for(users["reviewer"])
    url = reverse("review-send-back", args=[project.slug, trace.pk])
    assert reviewer.post(url, {"comment": ""}).status_code == 422
    assert reviewer.post(url, {"comment": "check step 2 again"}).status_code == 302
    assert Review.objects.filter(decision=ReviewDecision.SEND_BACK).count() == 2
    annotator = client_for(bea)
    page = annotator.get(reverse("annotate", args=[project.slug]))
    assert b"check step 2 again" in page.content
    # Relabelling supersedes the request.
    submit = reverse("annotate-submit", args=[project.slug, trace.pk])
    response = annotator.post(submit, {"first_error_step": "-1"}, **HTMX)
    assert response.status_code == 200
    assert b"sent back to you" not in response.content
    assert (
        b"check step 2 again" not in annotator.get(reverse("annotate", args=[project.slug])).content
    )


def test_it_marks_gold_and_shows_gold_accuracy(project, users, bea, client_for):
    traces = [make_trace(project, 3, ext=f"g{i}") for i in range(2)]
    reviewer = client_for(users["reviewer"])
    for trace, answer in zip(traces, ["1", "-1"], strict=True):
        url = reverse("mark-gold", args=[project.slug, trace.pk])
        assert reviewer.post(url, {"first_error_step": answer}).status_code == 302
        trace.refresh_from_db()
        assert trace.is_gold
    gold = Annotation.objects.get(trace=traces[0], kind=AnnotationKind.GOLD)
    assert gold.first_error_step == 1
    submit_label(project, traces[0], bea, Label(1, None))
    submit_label(project, traces[1], bea, Label(0, None))
    page = reviewer.get(reverse("agreement", args=[project.slug]))
    row = next(r for r in page.context["quality"].annotators if r.name == "bea")
    assert (row.gold_answered, row.gold_correct, row.gold_accuracy) == (2, 1, 0.5)
    assert b"0.500" in page.content
    url = reverse("mark-gold", args=[project.slug, traces[0].pk])
    reviewer.post(url, {"unmark": "1"})
    traces[0].refresh_from_db()
    assert not traces[0].is_gold


def test_it_shows_every_version_in_the_history(project, users, bea, client_for):
    project.annotators_per_trace = 2
    project.save()
    trace = make_trace(project, 3)
    submit_label(project, trace, users["annotator"], Label(0, None))
    submit_label(project, trace, users["annotator"], Label(-1, None))
    submit_label(project, trace, bea, Label(2, None))
    url = reverse("trace-history", args=[project.slug, trace.pk])
    page = client_for(users["reviewer"]).get(url)
    versions = [(a.annotator.username, a.version, a.is_latest) for a in page.context["versions"]]
    assert versions == [("alan", 1, False), ("alan", 2, True), ("bea", 1, True)]
    # An annotator sees only their own history.
    own = client_for(bea).get(url)
    assert [a.annotator.username for a in own.context["versions"]] == ["bea"]
