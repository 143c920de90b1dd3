"""The labelling workspace: serving, submitting, undo, skip, flags, blindness, access."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotator import runs
from annotator.labelling import (
    MAX_REASON_LENGTH,
    Label,
    LabelError,
    LabelRefused,
    NotScreened,
    check_label,
    normalise_label,
    submit_label,
)
from annotator.models import (
    Annotation,
    AnnotationKind,
    Assignment,
    LabelScheme,
    Membership,
    Role,
    Trace,
)
from tests.factories import HTMX, make_trace, served_id


def add_member(project, user, role=Role.ANNOTATOR):
    Membership.objects.create(project=project, user=user, role=role)
    return user


@pytest.fixture
def traces(project):
    return [make_trace(project, 3, ext=f"t{i}") for i in range(4)]


# ------------------------------------------------------------------ normalise_label


def test_it_fills_earlier_steps_and_leaves_later_ones_unjudged():
    label = normalise_label(4, LabelScheme.FIRST_ERROR, 2, [None, 0, None, None])
    assert label.first_error_step == 2
    assert label.step_ratings == [1, 0, -1, None]


def test_it_derives_the_first_error_from_ratings():
    label = normalise_label(4, LabelScheme.PER_STEP, None, [1, 0, -1, 1])
    assert (label.first_error_step, label.step_ratings) == (2, [1, 0, -1, None])
    label = normalise_label(3, LabelScheme.PER_STEP, None, [1, 0, 1])
    assert (label.first_error_step, label.step_ratings) == (-1, [1, 0, 1])


def test_it_marks_all_correct():
    label = normalise_label(3, LabelScheme.FIRST_ERROR, -1, [None, 0, None])
    assert (label.first_error_step, label.step_ratings) == (-1, [1, 0, 1])


@pytest.mark.parametrize(
    ("scheme", "first_error", "ratings", "message"),
    [
        (LabelScheme.FIRST_ERROR, None, [1, None, None], "mark the first wrong step"),
        (LabelScheme.PER_STEP, 2, [1, None, None], "rate every step before the first error"),
        (LabelScheme.PER_STEP, -1, [1, 1, None], "rate every step before the first error"),
        (LabelScheme.FIRST_ERROR, -1, [1, -1, 1], "marked all correct"),
        (LabelScheme.FIRST_ERROR, 2, [-1, 1, None], "before the first error"),
        (LabelScheme.FIRST_ERROR, 3, [None, None, None], "no step 3"),
        (LabelScheme.FIRST_ERROR, None, [1, 2, 1], "must be -1, 0 or"),
    ],
)
def test_it_refuses_inconsistent_labels(scheme, first_error, ratings, message):
    with pytest.raises(LabelError, match=message):
        normalise_label(3, scheme, first_error, ratings)


def test_it_needs_a_reason_for_a_flag():
    with pytest.raises(LabelError, match="reason"):
        normalise_label(3, LabelScheme.FIRST_ERROR, None, [None] * 3, "bad_problem", "  ")
    label = normalise_label(3, LabelScheme.FIRST_ERROR, None, [None] * 3, "gave_up", "too long")
    assert (label.first_error_step, label.flag, label.reason) == (None, "gave_up", "too long")


# ------------------------------------------------------------------ check_label


@pytest.mark.parametrize(
    ("first_error", "ratings", "flag", "reason", "field", "message"),
    [
        (None, [1, 1], "", "", "step_ratings", "3 ratings expected"),
        (None, [1, 2, 1], "", "", "step_ratings", "must be -1, 0 or"),
        (None, None, "nope", "why", "flag", "unknown flag"),
        (None, None, "gave_up", "a\x00b", "reason", "NUL"),
        (None, None, "gave_up", "x" * (MAX_REASON_LENGTH + 1), "reason", "at most 2000"),
        (None, None, "gave_up", " ", None, "give a reason"),
        (5, None, "", "", None, "no step 5"),
        (-1, [1, -1, 1], "", "", None, "rated -1 but the trace is marked all correct"),
        # A flagged label carries no verdict: no first error, no -1 rating beside a flag.
        (1, [1, -1, None], "bad_problem", "two answers", "flag", "carries no verdict"),
        (-1, None, "gave_up", "too long", "flag", "carries no verdict"),
        (None, [1, -1, None], "bad_step_split", "merged", "flag", "carries no verdict"),
    ],
)
def test_check_label_names_the_field_at_fault(
    project, users, first_error, ratings, flag, reason, field, message
):
    trace = make_trace(project, 3)
    with pytest.raises(LabelRefused, match=message) as refused:
        check_label(project, trace, users["annotator"], first_error, ratings, flag, reason)
    assert refused.value.field == field


def test_check_label_refuses_a_regular_trace_before_screening(project, users):
    regular = make_trace(project, 3)
    gold = make_trace(project, 3, is_gold=True)
    Annotation.objects.create(
        trace=gold, annotator=users["reviewer"], kind=AnnotationKind.GOLD, first_error_step=-1
    )
    project.screening_questions = 1
    project.save()
    with pytest.raises(NotScreened, match="screening questions"):
        check_label(project, regular, users["annotator"], -1, None)
    label = check_label(project, gold, users["annotator"], -1, None)
    assert (label.first_error_step, label.step_ratings) == (-1, [1, 1, 1])


# ------------------------------------------------------------------ access


def _routes(project, trace, annotation_id):
    """(name, method, url) of every route of the workspace."""
    slug, pk = project.slug, trace.pk
    return [
        ("annotate", "get", reverse("annotate", args=[slug])),
        ("annotate-trace", "get", reverse("annotate-trace", args=[slug, pk])),
        ("annotate-submit", "post", reverse("annotate-submit", args=[slug, pk])),
        ("annotate-skip", "post", reverse("annotate-skip", args=[slug, pk])),
        ("annotate-undo", "post", reverse("annotate-undo", args=[slug])),
        ("annotate-claim", "post", reverse("annotate-claim", args=[slug])),
        ("annotate-claim-trace", "post", reverse("annotate-claim-trace", args=[slug, pk])),
        ("annotate-progress", "get", reverse("annotate-progress", args=[slug])),
        ("trace-history", "get", reverse("trace-history", args=[slug, pk])),
        ("mark-gold", "post", reverse("mark-gold", args=[slug, pk])),
        ("review", "get", reverse("review", args=[slug])),
        ("review-trace", "get", reverse("review-trace", args=[slug, pk])),
        ("review-adjudicate", "post", reverse("review-adjudicate", args=[slug, pk])),
        ("review-send-back", "post", reverse("review-send-back", args=[slug, pk])),
        ("review-annotation", "post", reverse("review-annotation", args=[slug, annotation_id])),
        ("agreement", "get", reverse("agreement", args=[slug])),
    ]


MANAGER_ONLY = {
    "mark-gold",
    "review",
    "review-trace",
    "review-adjudicate",
    "review-send-back",
    "review-annotation",
    "agreement",
}
DATA = {"first_error_step": "-1", "decision": "accept", "comment": "look again"}


def test_it_checks_membership(project, users, traces, client_for):
    annotation = Annotation.objects.create(
        trace=traces[0], annotator=users["annotator"], first_error_step=-1
    )
    client = client_for(users["outsider"])
    for _name, method, url in _routes(project, traces[0], annotation.pk):
        response = getattr(client, method)(url, DATA)
        assert response.status_code == 404, url
    assert Annotation.objects.count() == 1
    assert not Assignment.objects.exists()
    assert not Trace.objects.filter(is_gold=True).exists()


def test_it_requires_login(project, traces, client):
    for _name, method, url in _routes(project, traces[0], 1):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login"))


def test_it_keeps_review_gold_and_agreement_for_managers(project, users, traces, client_for):
    annotation = Annotation.objects.create(
        trace=traces[0], annotator=users["annotator"], first_error_step=-1
    )
    client = client_for(users["annotator"])
    for name, method, url in _routes(project, traces[0], annotation.pk):
        if name in MANAGER_ONLY:
            assert getattr(client, method)(url, DATA).status_code == 404, url
    assert Annotation.objects.count() == 1
    assert not annotation.reviews.exists()
    reviewer = client_for(users["reviewer"])
    for name, method, url in _routes(project, traces[0], annotation.pk):
        if name in MANAGER_ONLY and method == "get":
            assert reviewer.get(url).status_code == 200, url


# ------------------------------------------------------------------ labelling


def test_it_serves_a_trace_and_holds_it(project, users, traces, client_for):
    client = client_for(users["annotator"])
    landing = client.get(reverse("annotate", args=[project.slug]))
    assert landing.status_code == 200 and served_id(landing) is None
    assert b'id="start"' in landing.content
    assert not Assignment.objects.exists()  # a GET holds nothing
    response = client.post(reverse("annotate-claim", args=[project.slug]), **HTMX)
    assert response.status_code == 200
    assert served_id(response) == traces[0].pk
    assert b"step 0 of t0" in response.content
    hold = Assignment.objects.get(annotator=users["annotator"])
    assert hold.trace_id == traces[0].pk and not hold.skipped
    # A reload shows the held trace (without holding anything new), so does "next".
    assert served_id(client.get(reverse("annotate", args=[project.slug]))) == traces[0].pk
    assert served_id(client.post(reverse("annotate-claim", args=[project.slug]), **HTMX)) == (
        traces[0].pk
    )
    assert Assignment.objects.count() == 1


def test_a_plain_claim_redirects_to_the_trace(project, users, traces, client_for):
    client = client_for(users["annotator"])
    response = client.post(reverse("annotate-claim", args=[project.slug]))
    assert response.status_code == 302
    assert response["Location"] == reverse("annotate-trace", args=[project.slug, traces[0].pk])
    assert Assignment.objects.get().trace_id == traces[0].pk


# ------------------------------------------------------------------ holds


def test_opening_a_trace_by_url_holds_nothing(project, users, traces, client_for):
    client = client_for(users["annotator"])
    url = reverse("annotate-trace", args=[project.slug, traces[2].pk])
    page = client.get(url)
    assert page.status_code == 200 and served_id(page) == traces[2].pk
    assert b'id="read-only"' in page.content and b" inert " in page.content
    assert not Assignment.objects.exists()
    claim = reverse("annotate-claim-trace", args=[project.slug, traces[2].pk])
    assert client.get(claim).status_code == 405  # only a POST claims
    claimed = client.post(claim, **HTMX)
    assert claimed.status_code == 200 and b'id="read-only"' not in claimed.content
    assert list(Assignment.objects.values_list("trace_id", flat=True)) == [traces[2].pk]
    assert b'id="read-only"' not in client.get(url).content  # held: editable


def test_it_caps_the_holds_per_person(project, users, traces, client_for):
    project.max_holds_per_person = 2
    project.save()
    client = client_for(users["annotator"])

    def claim(trace):
        return client.post(reverse("annotate-claim-trace", args=[project.slug, trace.pk]), **HTMX)

    assert claim(traces[0]).status_code == 200
    assert claim(traces[1]).status_code == 200
    assert claim(traces[1]).status_code == 200  # claiming a held trace again is no new hold
    refused = claim(traces[2])
    assert refused.status_code == 409
    assert b"You hold 2 other traces, the most this project allows" in refused.content
    assert b'id="read-only"' in refused.content
    held = Assignment.objects.filter(annotator=users["annotator"])
    assert sorted(held.values_list("trace_id", flat=True)) == [traces[0].pk, traces[1].pk]
    # Submitting one frees a place.
    submit = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    assert client.post(submit, {"first_error_step": "-1"}, **HTMX).status_code == 200
    assert claim(traces[2]).status_code == 200


def test_it_refuses_a_claim_on_a_full_trace(project, users, traces, django_user_model, client_for):
    other = add_member(project, django_user_model.objects.create_user("bea"))
    client_for(other).post(reverse("annotate-claim", args=[project.slug]), **HTMX)  # bea: t0
    client = client_for(users["annotator"])
    refused = client.post(reverse("annotate-claim-trace", args=[project.slug, traces[0].pk]))
    assert refused.status_code == 409
    assert b"already has its 1 annotator(s), counting people who hold it now" in refused.content
    assert not Assignment.objects.filter(annotator=users["annotator"]).exists()


def test_a_direct_submit_beyond_n_is_refused(project, users, traces, django_user_model, client_for):
    other = add_member(project, django_user_model.objects.create_user("bea"))
    submit = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    assert client_for(other).post(submit, {"first_error_step": "-1"}, **HTMX).status_code == 200
    client = client_for(users["annotator"])
    refused = client.post(submit, {"first_error_step": "1"}, **HTMX)
    assert refused.status_code == 422
    assert b"This trace already has its 1 label: yours was not stored" in refused.content
    assert Annotation.objects.filter(trace=traces[0]).count() == 1
    traces[0].refresh_from_db()
    assert traces[0].label_count == 1
    # Someone else's live hold counts for a submitter who holds nothing...
    bea = client_for(other)
    bea.post(reverse("annotate-claim", args=[project.slug]), **HTMX)  # bea now holds t1
    late = reverse("annotate-submit", args=[project.slug, traces[1].pk])
    assert client_for(users["annotator"]).post(late, {"first_error_step": "-1"}).status_code == 422
    # ...and a reviewer may add a label beyond N.
    reviewer = client_for(users["reviewer"])
    assert reviewer.post(submit, {"first_error_step": "1"}, **HTMX).status_code == 200
    traces[0].refresh_from_db()
    assert traces[0].label_count == 2


def test_it_submits_and_returns_the_next_trace_in_one_request(project, users, traces, client_for):
    client = client_for(users["annotator"])
    client.post(reverse("annotate-claim", args=[project.slug]), **HTMX)
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    response = client.post(url, {"first_error_step": "1", "served_at": "0"}, **HTMX)
    assert response.status_code == 200
    assert served_id(response) == traces[1].pk
    assert response["HX-Push-Url"] == reverse("annotate-trace", args=[project.slug, traces[1].pk])
    assert b"<html" not in response.content  # the workspace partial only
    annotation = Annotation.objects.get(trace=traces[0])
    assert annotation.first_error_step == 1
    assert annotation.step_ratings == [1, -1, None]
    assert annotation.annotator == users["annotator"]
    assert annotation.version == 1 and annotation.is_latest
    assert annotation.seconds_spent is not None and annotation.seconds_spent >= 0
    traces[0].refresh_from_db()
    assert traces[0].label_count == 1
    held = Assignment.objects.filter(annotator=users["annotator"])
    assert list(held.values_list("trace_id", flat=True)) == [traces[1].pk]


def test_it_records_time_spent(project, users, traces, client_for):
    import time

    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    client.post(url, {"first_error_step": "-1", "served_at": f"{time.time() - 42:.3f}"}, **HTMX)
    seconds = Annotation.objects.get(trace=traces[0]).seconds_spent
    assert 41 <= seconds <= 60


def test_a_served_at_that_is_no_time_records_no_time(project, users, traces, client_for):
    """``float("nan")`` parses: a NaN passed the clamp and was stored as the time spent."""
    client = client_for(users["annotator"])
    for trace, served_at in zip(traces, ("nan", "inf", "-inf", "later"), strict=True):
        url = reverse("annotate-submit", args=[project.slug, trace.pk])
        response = client.post(url, {"first_error_step": "-1", "served_at": served_at}, **HTMX)
        assert response.status_code == 200, served_at
        assert Annotation.objects.get(trace=trace).seconds_spent is None, served_at


def test_it_submits_without_javascript(project, users, traces, client_for):
    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    response = client.post(url, {"rating-0": "1", "rating-1": "1", "rating-2": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("annotate", args=[project.slug])
    annotation = Annotation.objects.get(trace=traces[0])
    assert (annotation.first_error_step, annotation.step_ratings) == (-1, [1, 1, 1])


def test_it_refuses_an_incomplete_per_step_label(project, users, traces, client_for):
    project.label_scheme = LabelScheme.PER_STEP
    project.save()
    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    response = client.post(url, {"first_error_step": "2", "rating-0": "1"}, **HTMX)
    assert response.status_code == 422
    assert b"rate every step before the first error (unrated: 1)" in response.content
    assert served_id(response) == traces[0].pk  # the same trace, with what was entered
    assert not Annotation.objects.exists()
    response = client.post(url, {"first_error_step": "2", "rating-0": "1", "rating-1": "0"}, **HTMX)
    assert response.status_code == 200
    assert Annotation.objects.get().step_ratings == [1, 0, -1]


def test_it_undoes_the_last_submission(project, users, traces, client_for):
    client = client_for(users["annotator"])
    submit = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    client.post(submit, {"first_error_step": "0"}, **HTMX)
    response = client.post(reverse("annotate-undo", args=[project.slug]), **HTMX)
    assert served_id(response) == traces[0].pk
    assert b"editing your submission (version 1)" in response.content
    assert re.search(rb'name="first_error_step" value="0" checked', response.content)
    response = client.post(submit, {"first_error_step": "-1"}, **HTMX)
    assert served_id(response) == traces[1].pk  # the held trace comes back next
    versions = Annotation.objects.filter(trace=traces[0]).order_by("version")
    assert [(a.version, a.is_latest, a.first_error_step) for a in versions] == [
        (1, False, 0),
        (2, True, -1),
    ]
    traces[0].refresh_from_db()
    assert traces[0].label_count == 1


def test_it_skips_a_trace_for_good(project, users, traces, client_for):
    client = client_for(users["annotator"])
    client.post(reverse("annotate-claim", args=[project.slug]), **HTMX)
    response = client.post(reverse("annotate-skip", args=[project.slug, traces[0].pk]), **HTMX)
    assert served_id(response) == traces[1].pk
    client.post(reverse("annotate-skip", args=[project.slug, traces[1].pk]), **HTMX)
    response = client.get(reverse("annotate", args=[project.slug]))
    assert served_id(response) == traces[2].pk
    assert Assignment.objects.filter(skipped=True).count() == 2
    assert not Annotation.objects.exists()


def test_it_flags_a_bad_problem_with_a_reason(project, users, traces, client_for):
    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    response = client.post(url, {"flag": "bad_problem", "reason": ""}, **HTMX)
    assert response.status_code == 422
    response = client.post(url, {"flag": "bad_problem", "reason": "two answers"}, **HTMX)
    assert response.status_code == 200
    annotation = Annotation.objects.get()
    assert annotation.bad_problem and annotation.flag_reason == "two answers"
    assert annotation.first_error_step is None
    traces[0].refresh_from_db()
    assert traces[0].label_count == 1


def test_it_refuses_a_flag_beside_a_first_error(project, users, traces, client_for):
    """The flag was stored and the first error dropped, its -1 rating kept."""
    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    marked = {"first_error_step": "1", "rating-0": "1", "rating-1": "-1", "rating-2": ""}
    response = client.post(url, {**marked, "flag": "bad_problem", "reason": "odd"}, **HTMX)
    assert response.status_code == 422
    assert b"A flagged label carries no verdict" in response.content
    assert served_id(response) == traces[0].pk
    assert not Annotation.objects.exists()
    rated = {"first_error_step": "", "rating-0": "1", "rating-1": "", "rating-2": ""}
    response = client.post(url, {**rated, "flag": "gave_up", "reason": "too long"}, **HTMX)
    assert response.status_code == 200
    annotation = Annotation.objects.get()
    assert (annotation.gave_up, annotation.first_error_step) == (True, None)
    assert annotation.step_ratings == [1, None, None]


def test_it_refuses_a_nul_in_the_flag_reason_as_a_form_error(project, users, traces, client_for):
    """PostgreSQL refuses NUL in text: the page answered 500, the API a 400."""
    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    response = client.post(url, {"flag": "bad_problem", "reason": "two\x00answers"}, **HTMX)
    assert response.status_code == 422
    assert b"reason must not contain NUL bytes" in response.content
    assert served_id(response) == traces[0].pk
    assert not Annotation.objects.exists()


def test_it_does_not_count_giving_up_toward_the_overlap(project, users, traces, client_for):
    client = client_for(users["annotator"])
    url = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    client.post(url, {"flag": "gave_up", "reason": "too hard"}, **HTMX)
    traces[0].refresh_from_db()
    assert traces[0].label_count == 0
    assert Annotation.objects.get().gave_up


def test_the_label_page_shows_the_human_first_error_the_trace_page_shows(
    project, users, client_for
):
    """As owner, the Label page said "Human: no verdict" (the owner's own label, none)
    where the trace page showed the annotators' first error."""
    trace = make_trace(project, 3, ext="t0")
    scores = json.dumps({"id": trace.external_id, "scores": [0.9, 0.2, 0.1]}).encode()
    runs.import_scores(project, io.BytesIO(scores), "s.jsonl", name="imp", user=users["owner"])
    submit_label(project, trace, users["annotator"], Label(1, [1, -1, None]))

    def human(user, name, *args) -> str:
        page = client_for(user).get(reverse(name, args=[project.slug, *args]))
        return re.search(r'id="human-first-error">(.*?)</td>', page.content.decode()).group(1)

    for user in (users["owner"], users["reviewer"]):
        assert human(user, "trace", trace.pk) == "step 1"
        assert human(user, "annotate-trace", trace.pk) == "step 1"
    # A blind annotator who sees the scores sees their own label's verdict on both.
    project.show_model_scores = True
    project.save()
    submit_label(project, trace, users["reviewer"], Label(-1, [1, 1, 1]))
    assert human(users["owner"], "annotate-trace", trace.pk) == human(
        users["owner"], "trace", trace.pk
    )
    assert "no verdict" in human(users["owner"], "annotate-trace", trace.pk)  # a disagreement
    assert human(users["annotator"], "annotate-trace", trace.pk) == "step 1"
    assert human(users["annotator"], "trace", trace.pk) == "step 1"


def test_it_escapes_step_text(project, users, client_for):
    trace = make_trace(
        project, steps=["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"], ext="x"
    )
    response = client_for(users["annotator"]).get(
        reverse("annotate-trace", args=[project.slug, trace.pk])
    )
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
    assert b"&lt;img src=x onerror=alert(1)&gt;" in response.content
    assert b"<img src=x" not in response.content


def test_it_keeps_annotators_blind(project, users, traces, django_user_model, client_for):
    other = add_member(project, django_user_model.objects.create_user("bea"))
    Annotation.objects.create(
        trace=traces[0], annotator=other, first_error_step=2, step_ratings=[1, 1, -1]
    )
    response = client_for(users["annotator"]).get(
        reverse("annotate-trace", args=[project.slug, traces[0].pk])
    )
    assert b"bea" not in response.content
    assert b"editing your submission" not in response.content
    assert not re.search(rb'value="-1" checked', response.content)


def test_it_shows_the_reference_answer_only_when_the_project_says_so(project, users, client_for):
    trace = make_trace(project, reference_answer="REF-ANSWER-42")
    client = client_for(users["annotator"])
    url = reverse("annotate-trace", args=[project.slug, trace.pk])
    assert b"REF-ANSWER-42" in client.get(url).content
    project.show_reference_answer = False
    project.save()
    assert b"REF-ANSWER-42" not in client.get(url).content


def test_it_says_honestly_why_nothing_is_served(project, users, client_for):
    client = client_for(users["annotator"])
    claim = reverse("annotate-claim", args=[project.slug])
    response = client.post(claim, **HTMX)
    assert response.status_code == 200
    assert b"No traces yet" in response.content
    assert b"held by someone else" not in response.content
    trace = make_trace(project)
    submit = reverse("annotate-submit", args=[project.slug, trace.pk])
    assert client.post(submit, {"first_error_step": "-1"}, **HTMX).status_code == 200
    assert b"Every trace has its 1 label" in client.post(claim, **HTMX).content
    project.annotators_per_trace = 2
    project.save()
    assert b"Nothing left for you" in client.post(claim, **HTMX).content


def test_it_submits_in_a_constant_number_of_queries(project, users, client_for):
    client = client_for(users["annotator"])

    def submit_next() -> int:
        trace_id = served_id(client.post(reverse("annotate-claim", args=[project.slug]), **HTMX))
        url = reverse("annotate-submit", args=[project.slug, trace_id])
        with CaptureQueriesContext(connection) as queries:
            response = client.post(url, {"first_error_step": "-1"}, **HTMX)
        assert response.status_code == 200 and served_id(response)
        # The test's own transaction turns each atomic block into SAVEPOINT/RELEASE
        # statements; outside tests those are BEGIN/COMMIT, which are not counted.
        return sum(
            1 for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
        )

    for i in range(3):
        make_trace(project, 3, ext=f"small{i}")
    small = submit_next()
    for i in range(60):
        make_trace(project, 12, ext=f"big{i}")
    assert submit_next() == small
    # 13: the trace lock and the read of what the N check needs are two statements,
    # since a read in the locking statement sees the rows from before its wait; the
    # hold's transaction sets its commit not to wait for the disk (``queue._hold``).
    assert small <= 13


@pytest.mark.django_db(transaction=True)
def test_a_label_commits_to_disk_and_only_the_hold_does_not_wait(project, users, client_for):
    """Submit-and-next commits twice: the label, which must survive a crash, and the
    next hold, which may be lost to one (``queue._hold``). Read the setting that
    decides it in each transaction, right after its write."""
    client = client_for(users["annotator"])
    traces = [make_trace(project, 3, ext=f"t{i}") for i in range(2)]
    seen: dict[str, str] = {}

    def read_setting(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        table = re.match(r'\s*INSERT INTO "?(annotator_\w+)"?', sql)
        if table:
            with context["connection"].connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('synchronous_commit')")
                seen[table.group(1)] = cursor.fetchone()[0]
        return result

    trace_id = served_id(client.post(reverse("annotate-claim", args=[project.slug]), **HTMX))
    url = reverse("annotate-submit", args=[project.slug, trace_id])
    with connection.execute_wrapper(read_setting):
        response = client.post(url, {"first_error_step": "-1"}, **HTMX)
    assert served_id(response) in {t.pk for t in traces} - {trace_id}
    assert seen == {"annotator_annotation": "on", "annotator_assignment": "off"}


def test_the_progress_line_counts_my_labels_and_the_queue(project, users, traces, client_for):
    client = client_for(users["annotator"])
    submit = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    client.post(submit, {"first_error_step": "-1"}, **HTMX)
    page = client.get(reverse("annotate-progress", args=[project.slug]), **HTMX)
    assert re.search(rb'id="progress-today">1<', page.content)
    assert re.search(rb'id="progress-left">3<', page.content)  # 4 traces, 1 has its label


def test_the_progress_line_gives_the_trace_its_place_among_the_traces_i_see(
    project, users, traces, client_for
):
    """Reference traces hidden from annotators are not counted: the place gives nothing away."""
    project.show_reference_answer = False
    project.save(update_fields=["show_reference_answer"])
    reference = make_trace(project, 2, ext="ref", generator="reference")
    last = make_trace(project, 2, ext="last")

    def line(user, trace):
        url = reverse("annotate-progress", args=[project.slug]) + f"?trace={trace.pk}"
        return client_for(user).get(url, **HTMX)

    page = line(users["annotator"], traces[2])
    assert re.search(rb'Trace <strong id="progress-position">3</strong> of 5 ', page.content)
    page = line(users["annotator"], last)
    assert re.search(rb'id="progress-position">5</strong> of 5 ', page.content)
    assert line(users["annotator"], reference).status_code == 404
    page = line(users["reviewer"], last)
    assert re.search(rb'id="progress-position">6</strong> of 6 ', page.content)
    # The workspace asks for the line of the trace it shows.
    workspace = client_for(users["annotator"]).get(
        reverse("annotate-trace", args=[project.slug, last.pk])
    )
    assert f"?trace={last.pk}".encode() in workspace.content


def test_the_project_list_shows_counts_and_roles(project, users, traces, client_for):
    submit = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    client_for(users["annotator"]).post(submit, {"first_error_step": "-1"}, **HTMX)
    row = re.search(
        r'<tr data-project="gsm8k">.*?</tr>',
        client_for(users["reviewer"]).get(reverse("home")).content.decode(),
        re.S,
    ).group()
    assert re.search(r'class="role">Reviewer<', row)
    assert re.search(r'class="figure traces">4<', row)
    assert re.search(r'class="figure labelled">1 ', row)
    assert re.search(r'class="figure review"><a [^>]*>0<', row)
    annotator_row = client_for(users["annotator"]).get(reverse("home")).content.decode()
    assert 'class="role">Annotator<' in annotator_row
    assert reverse("review", args=[project.slug]) not in annotator_row


def test_the_progress_line_drops_with_each_label_before_the_overlap_is_reached(
    project, users, traces, client_for
):
    # With two labels needed per trace, the user's first label leaves every trace short
    # of its N, yet the trace is no longer in their queue.
    project.annotators_per_trace = 2
    project.save()
    client = client_for(users["annotator"])
    progress = reverse("annotate-progress", args=[project.slug])
    assert re.search(rb'id="progress-left">4<', client.get(progress, **HTMX).content)
    submit = reverse("annotate-submit", args=[project.slug, traces[0].pk])
    client.post(submit, {"first_error_step": "-1"}, **HTMX)
    assert re.search(rb'id="progress-left">3<', client.get(progress, **HTMX).content)
    # Another annotator still has all four to label.
    other = client_for(users["reviewer"])
    assert re.search(rb'id="progress-left">4<', other.get(progress, **HTMX).content)
