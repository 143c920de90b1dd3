"""The API for teams: the root, local docs, tokens from their page, imports, claim,
submit and my labels, with the Label page's rules and JSON errors."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator.importing import import_file
from annotator.models import (
    Annotation,
    AnnotationKind,
    Assignment,
    ImportJob,
    Membership,
    Role,
)
from tests.factories import HTMX, PROCESSBENCH_GSM8K, make_trace

LABEL_FIELDS = (
    "first_error_step",
    "step_ratings",
    "bad_problem",
    "gave_up",
    "bad_step_split",
    "flag_reason",
    "version",
    "is_latest",
    "kind",
)


def token_from_page(client) -> str:
    """Create a token on the tokens page, as a person would, and read it off the page."""
    made = client.post(reverse("token-create"))
    assert (made.status_code, made["Location"]) == (302, reverse("tokens"))
    page = client.get(made["Location"])
    return re.search(rb'<code id="token-key">(\w+)</code>', page.content).group(1).decode()


def api_with(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


@pytest.fixture
def bea(project, django_user_model):
    user = django_user_model.objects.create_user("bea", password="pw-bea-123")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


def test_a_token_from_the_page_works_until_revoked(project, users, client_for):
    client = client_for(users["annotator"])
    assert b"You have no API token" in client.get(reverse("tokens")).content
    key = token_from_page(client)
    assert key.encode() not in client.get(reverse("tokens")).content  # shown once
    api = api_with(key)
    root = api.get("/api/v1/")
    assert root.status_code == 200
    assert root.json()["projects"].endswith("/api/v1/projects/")
    assert [p["slug"] for p in api.get(root.json()["projects"]).json()["results"]] == ["gsm8k"]
    replaced = token_from_page(client)  # a new token replaces the old one
    assert api.get("/api/v1/").status_code == 401
    api = api_with(replaced)
    assert api.get("/api/v1/").status_code == 200
    assert client.post(reverse("token-revoke")).status_code == 302
    refused = api.get("/api/v1/projects/")
    assert refused.status_code == 401 and "detail" in refused.json()


def test_reloading_the_page_after_a_new_token_keeps_it_and_shows_it_no_more(users, client_for):
    client = client_for(users["annotator"])
    key = token_from_page(client)
    reloaded = client.get(reverse("tokens"))
    assert reloaded.status_code == 200
    assert b'id="new-token"' not in reloaded.content and key.encode() not in reloaded.content
    assert Token.objects.get(user=users["annotator"]).key == key
    assert api_with(key).get("/api/v1/").status_code == 200


def test_the_docs_are_served_from_our_own_files(users, client_for):
    client = client_for(users["annotator"])
    for name in ("api-docs", "api-redoc"):
        page = client.get(reverse(name))
        assert page.status_code == 200, name
        html = page.content.decode()
        assert "/static/drf_spectacular_sidecar/" in html, name
        assert not re.search(r"https?://(?!testserver)[\w.-]+/[^\"']*\.js", html), name
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = json.loads(schema.content)["paths"]
    for route in ("claim/", "labels/", "traces/{trace_id}/label/", "imports/"):
        assert f"/api/v1/projects/{{slug}}/{route}" in paths, route


def test_claim_and_submit_store_the_same_rows_as_the_page(project, users, bea, client_for):
    project.annotators_per_trace = 2
    project.save()
    trace = make_trace(project, 4)
    # alan on the page
    page = client_for(users["annotator"])
    page.post(reverse("annotate-claim", args=[project.slug]), **HTMX)
    submit = reverse("annotate-submit", args=[project.slug, trace.pk])
    form = {"first_error_step": "2", "rating-0": "1", "rating-1": "0", "served_at": "0"}
    assert page.post(submit, form, **HTMX).status_code == 200
    # bea through the API, with a token from her page
    api = api_with(token_from_page(client_for(bea)))
    claimed = api.post(f"/api/v1/projects/{project.slug}/claim/")
    assert claimed.status_code == 200
    assert claimed.json()["trace"]["id"] == trace.pk
    assert claimed.json()["trace"]["annotations"] == []  # blind to alan's label
    assert Assignment.objects.filter(annotator=bea, trace=trace).exists()
    body = {"first_error_step": 2, "step_ratings": [1, 0, None, None], "seconds_spent": 12.5}
    stored = api.post(f"/api/v1/projects/{project.slug}/traces/{trace.pk}/label/", body, "json")
    assert stored.status_code == 201, stored.json()
    assert stored.json()["step_ratings"] == [1, 0, -1, None]
    rows = {a.annotator.username: a for a in Annotation.objects.filter(trace=trace)}
    assert [getattr(rows["bea"], f) for f in LABEL_FIELDS] == [
        getattr(rows["alan"], f) for f in LABEL_FIELDS
    ]
    trace.refresh_from_db()
    assert trace.label_count == 2
    assert not Assignment.objects.filter(trace=trace).exists()  # both holds released
    mine = api.get(f"/api/v1/projects/{project.slug}/labels/").json()
    assert [(r["trace"], r["first_error_step"]) for r in mine["results"]] == [(trace.pk, 2)]
    done = api.post(f"/api/v1/projects/{project.slug}/claim/").json()
    assert done == {"trace": None, "reason": "done"}


def test_a_malformed_label_gives_400_json_with_field_messages(project, users, client_for):
    trace = make_trace(project, 3)
    api = api_with(token_from_page(client_for(users["annotator"])))
    url = f"/api/v1/projects/{project.slug}/traces/{trace.pk}/label/"
    bad = api.post(url, {"first_error_step": "x", "step_ratings": [1, 5], "flag": "nope"}, "json")
    assert bad.status_code == 400 and bad["Content-Type"] == "application/json"
    errors = bad.json()
    assert set(errors) == {"first_error_step", "step_ratings", "flag", "detail", "code"}
    assert errors["first_error_step"] == ["A valid integer is required."]
    wrong_length = api.post(url, {"step_ratings": [1, 1]}, "json")
    assert wrong_length.json() == {
        "step_ratings": ["3 ratings expected, one per step"],
        "detail": "step_ratings: 3 ratings expected, one per step",
        "code": "invalid",
    }
    # The page's rules, in the page's words.
    unreasoned = api.post(url, {"flag": "bad_problem", "reason": " "}, "json")
    assert unreasoned.status_code == 400
    assert "reason" in unreasoned.json()["non_field_errors"][0]
    assert api.post(url, "{not json", content_type="application/json").status_code == 400
    assert not Annotation.objects.exists()


def test_the_api_names_the_field_the_page_s_checks_refuse(project, users, client_for):
    trace = make_trace(project, 3)
    api = api_with(token_from_page(client_for(users["annotator"])))
    url = f"/api/v1/projects/{project.slug}/traces/{trace.pk}/label/"
    for body, field in [
        ({"flag": "gave_up", "reason": "a\x00b"}, "reason"),
        ({"flag": "gave_up", "reason": "x" * 2001}, "reason"),
        ({"step_ratings": [1, 1, 1, 1]}, "step_ratings"),
        ({"first_error_step": -1, "step_ratings": [1, -1, 1]}, "non_field_errors"),
        # A flagged label carries no verdict, as on the page.
        ({"first_error_step": 1, "flag": "bad_problem", "reason": "odd"}, "flag"),
        ({"step_ratings": [-1, None, None], "flag": "gave_up", "reason": "odd"}, "flag"),
    ]:
        refused = api.post(url, body, "json")
        assert refused.status_code == 400, body
        assert list(refused.json()) == [field, "detail", "code"], body
    assert not Annotation.objects.exists()


def test_the_api_answers_409_to_a_label_before_screening(project, users, client_for):
    regular = make_trace(project, 3)
    gold = make_trace(project, 3, is_gold=True)
    Annotation.objects.create(
        trace=gold, annotator=users["reviewer"], kind=AnnotationKind.GOLD, first_error_step=-1
    )
    project.screening_questions = 1
    project.save()
    api = api_with(token_from_page(client_for(users["annotator"])))
    url = f"/api/v1/projects/{project.slug}/traces/{{}}/label/"
    refused = api.post(url.format(regular.pk), {"first_error_step": -1}, "json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "screening"
    assert "screening questions" in refused.json()["detail"]
    assert api.post(url.format(gold.pk), {"first_error_step": -1}, "json").status_code == 201
    assert api.post(url.format(regular.pk), {"first_error_step": -1}, "json").status_code == 201


def test_the_api_refuses_a_label_beyond_n(project, users, bea, client_for):
    trace = make_trace(project, 3)
    url = f"/api/v1/projects/{project.slug}/traces/{trace.pk}/label/"
    first = api_with(token_from_page(client_for(bea))).post(url, {"first_error_step": -1}, "json")
    assert first.status_code == 201
    api = api_with(token_from_page(client_for(users["annotator"])))
    refused = api.post(url, {"first_error_step": -1}, "json")
    assert refused.status_code == 409 and refused.json()["code"] == "trace_full"
    assert Annotation.objects.count() == 1


def test_it_lists_and_gets_imports_for_owners(project, users, client_for):
    import_file(project, PROCESSBENCH_GSM8K)
    job = ImportJob.objects.create(
        project=project, created_by=users["owner"], file_name="x.json", upload="u/x.json"
    )
    owner = api_with(token_from_page(client_for(users["owner"])))
    listed = owner.get(f"/api/v1/projects/{project.slug}/imports/")
    assert listed.status_code == 200
    assert [j["id"] for j in listed.json()["results"]] == [job.pk]
    one = owner.get(f"/api/v1/projects/{project.slug}/imports/{job.pk}/")
    assert one.json()["file_name"] == "x.json"
    annotator = api_with(token_from_page(client_for(users["annotator"])))
    hidden = annotator.get(f"/api/v1/projects/{project.slug}/imports/")
    assert hidden.status_code == 404 and "detail" in hidden.json()


def test_outsiders_get_json_404s(project, users, client_for):
    trace = make_trace(project, 3)
    api = api_with(token_from_page(client_for(users["outsider"])))
    for method, url in [
        ("post", f"/api/v1/projects/{project.slug}/claim/"),
        ("get", f"/api/v1/projects/{project.slug}/labels/"),
        ("post", f"/api/v1/projects/{project.slug}/traces/{trace.pk}/label/"),
    ]:
        response = getattr(api, method)(url, {"first_error_step": -1}, "json")
        assert response.status_code == 404 and "detail" in response.json(), url
    assert not Annotation.objects.exists() and not Assignment.objects.exists()
