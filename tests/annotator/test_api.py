"""The REST API: token auth, membership, the same data as the pages."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotator.importing import import_file
from annotator.models import ImportJob, Trace
from tests.factories import PROCESSBENCH_GSM8K, make_trace


@pytest.fixture
def api_for(db):
    def make(user):
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def imported(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return json.loads(PROCESSBENCH_GSM8K.read_text())


def test_it_requires_authentication(imported):
    response = APIClient().get("/api/v1/projects/gsm8k/traces/")
    assert response.status_code == 401


def test_it_checks_membership(api_for, users, imported):
    client = api_for(users["outsider"])
    assert client.get("/api/v1/projects/").json()["results"] == []
    assert client.get("/api/v1/projects/gsm8k/").status_code == 404
    assert client.get("/api/v1/projects/gsm8k/traces/").status_code == 404
    trace = Trace.objects.first()
    assert client.get(f"/api/v1/projects/gsm8k/traces/{trace.id}/").status_code == 404
    assert client.get("/api/v1/projects/gsm8k/export/?format=trl").status_code == 404


def test_it_lists_filters_and_shows_traces(api_for, users, imported):
    client = api_for(users["annotator"])
    page = client.get("/api/v1/projects/gsm8k/traces/", {"split": "gsm8k", "limit": 5}).json()
    assert page["count"] == 400
    assert [t["external_id"] for t in page["results"]] == [r["id"] for r in imported[:5]]
    detail = client.get(f"/api/v1/projects/gsm8k/traces/{page['results'][2]['id']}/").json()
    assert detail["steps"] == imported[2]["steps"]
    assert detail["annotations"] == []  # blind: the importer's label is someone else's
    owner_view = (
        api_for(users["owner"])
        .get(f"/api/v1/projects/gsm8k/traces/{page['results'][2]['id']}/")
        .json()
    )
    assert [a["first_error_step"] for a in owner_view["annotations"]] == [imported[2]["label"]]


def test_export_streams_the_same_records_as_the_command(api_for, users, imported):
    response = api_for(users["owner"]).get(
        "/api/v1/projects/gsm8k/export/", {"format": "processbench"}
    )
    assert response.status_code == 200
    assert [
        json.loads(line) for line in b"".join(response.streaming_content).splitlines()
    ] == imported


def test_export_answers_like_the_project_pages_download(api_for, users, imported, client_for):
    api = api_for(users["owner"])
    page = client_for(users["owner"])
    url = reverse("export", args=["gsm8k"])
    for params in ({"format": "nope"}, {"labels": "all"}, {"file": "csv"}, {"split": "x" * 65}):
        from_api = api.get("/api/v1/projects/gsm8k/export/", params)
        from_page = page.get(url, params)
        assert from_api.status_code == from_page.status_code == 400
        assert from_api.json() == from_page.json()
    assert api.get("/api/v1/projects/gsm8k/export/", {"format": "nope", "labels": "x"}).json() == {
        "detail": "format must be one of processbench, trl, prm800k, math-shepherd, jsonl; "
        "labels must be one of human, adjudicated",
        "code": "invalid",
    }
    params = {"format": "trl", "split": "gsm8k", "file": "parquet"}
    from_api = api.get("/api/v1/projects/gsm8k/export/", params)
    from_page = page.get(url, params)
    assert from_api["Content-Disposition"] == from_page["Content-Disposition"]
    assert 'filename="gsm8k-trl-gsm8k.parquet"' in from_api["Content-Disposition"]
    assert b"".join(from_api.streaming_content) == b"".join(from_page.streaming_content)


def test_a_download_names_its_label_set_and_an_empty_set_is_refused(
    api_for, users, project, imported, client_for
):
    from annotator.labelsets import create_label_set
    from annotator.models import LabelSet

    create_label_set(project, "experts", "human")
    LabelSet.objects.create(project=project, name="empty", source="human")
    page = client_for(users["owner"])
    url = reverse("export", args=["gsm8k"])
    named = page.get(url, {"format": "processbench", "labels": "experts", "split": "gsm8k"})
    assert named.status_code == 200
    assert 'filename="gsm8k-processbench-experts-gsm8k.jsonl"' in named["Content-Disposition"]
    adjudicated = page.get(url, {"labels": "adjudicated"})
    assert 'filename="gsm8k-jsonl-adjudicated.jsonl"' in adjudicated["Content-Disposition"]
    for fmt in ("processbench", "jsonl"):
        from_page = page.get(url, {"format": fmt, "labels": "empty"})
        from_api = api_for(users["owner"]).get(
            "/api/v1/projects/gsm8k/export/", {"format": fmt, "labels": "empty"}
        )
        assert from_page.status_code == from_api.status_code == 400
        assert (
            from_page.json()
            == from_api.json()
            == {
                "detail": "labels: the label set 'empty' holds no labels, so there is nothing "
                "to download; choose another label set",
                "code": "empty_label_set",
            }
        )


def test_the_root_lists_every_project_resource(api_for, users, db):
    from annotator.api.urls import urlpatterns

    root = api_for(users["owner"]).get("/api/v1/")
    assert root.status_code == 200
    listed = set(root.json()["per_project"].values())
    lists = {
        str(p.pattern).replace("<slug:slug>", "{slug}")
        for p in urlpatterns
        if str(p.pattern).startswith("projects/<slug:slug>/") and str(p.pattern).count("<") == 1
    }
    assert {"projects/{slug}/mc-runs/", "projects/{slug}/label-sets/"} <= lists
    assert lists <= listed


def test_import_endpoint_queues_a_job_for_owners_only(api_for, users, project):
    upload = SimpleUploadedFile("gsm8k.json", PROCESSBENCH_GSM8K.read_bytes())
    assert (
        api_for(users["annotator"])
        .post("/api/v1/projects/gsm8k/imports/", {"file": upload}, format="multipart")
        .status_code
        == 404
    )
    upload.seek(0)
    response = api_for(users["owner"]).post(
        "/api/v1/projects/gsm8k/imports/",
        {"file": upload, "format": "processbench"},
        format="multipart",
    )
    assert response.status_code == 202
    job = ImportJob.objects.get()
    assert response.json()["status"] == "queued" and job.format == "processbench"
    assert (
        api_for(users["owner"]).get(f"/api/v1/projects/gsm8k/imports/{job.id}/").json()["id"]
        == job.id
    )


def test_openapi_schema_is_served(api_for, users, db):
    response = api_for(users["owner"]).get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/projects/{slug}/traces/" in response.content


def test_annotators_get_no_reference_answer_where_the_project_hides_it(api_for, users, project):
    trace = make_trace(project, reference_answer="42")
    detail = f"/api/v1/projects/gsm8k/traces/{trace.id}/"
    annotator, owner = api_for(users["annotator"]), api_for(users["owner"])
    assert annotator.get(detail).json()["reference_answer"] == "42"
    project.show_reference_answer = False
    project.save()
    assert annotator.get(detail).json()["reference_answer"] is None
    listed = annotator.get("/api/v1/projects/gsm8k/traces/").json()["results"]
    assert [t["reference_answer"] for t in listed] == [None]
    assert owner.get(detail).json()["reference_answer"] == "42"
    assert (
        owner.get("/api/v1/projects/gsm8k/traces/").json()["results"][0]["reference_answer"] == "42"
    )
