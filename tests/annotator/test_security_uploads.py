"""Uploads over ``STEPWISE_MAX_UPLOAD_BYTES`` are refused before their body is read,
on the page and the API, and nothing reaches storage or the job table."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from annotator.models import ImportJob

ROWS = b'{"problem": "p", "steps": ["a", "b"]}\n' * 200  # about 8 KB


@pytest.fixture
def small_limit(settings):
    settings.MAX_UPLOAD_BYTES = 4000
    return settings


def stored_uploads() -> list[str]:
    if not default_storage.exists("uploads"):
        return []
    return default_storage.listdir("uploads")[1]


def test_the_import_page_refuses_an_upload_over_the_limit(
    client_for, users, project, small_limit
) -> None:
    before = stored_uploads()
    response = client_for(users["owner"]).post(
        reverse("import", args=["gsm8k"]),
        {"file": SimpleUploadedFile("big.jsonl", ROWS), "format": "auto"},
    )
    assert response.status_code == 413
    assert b"at most 3.9\xc2\xa0KB may be uploaded (STEPWISE_MAX_UPLOAD_BYTES)" in response.content
    assert not ImportJob.objects.exists()
    assert stored_uploads() == before


def test_the_import_api_refuses_an_upload_over_the_limit(users, project, small_limit) -> None:
    api = APIClient()
    api.force_authenticate(users["owner"])
    response = api.post(
        "/api/v1/projects/gsm8k/imports/",
        {"file": SimpleUploadedFile("big.jsonl", ROWS)},
        format="multipart",
    )
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "upload_too_large"
    assert "STEPWISE_MAX_UPLOAD_BYTES" in body["detail"]
    assert not ImportJob.objects.exists()


def test_an_upload_under_the_limit_is_queued(client_for, users, project, settings) -> None:
    settings.MAX_UPLOAD_BYTES = 100_000
    response = client_for(users["owner"]).post(
        reverse("import", args=["gsm8k"]),
        {"file": SimpleUploadedFile("ok.jsonl", ROWS), "format": "auto", "step_splitter": "lines"},
    )
    assert response.status_code == 302
    assert ImportJob.objects.get().file_name == "ok.jsonl"


def test_members_who_may_not_import_learn_nothing_about_the_limit(
    client_for, users, project, small_limit
) -> None:
    response = client_for(users["annotator"]).post(
        reverse("import", args=["gsm8k"]), {"file": SimpleUploadedFile("big.jsonl", ROWS)}
    )
    assert response.status_code == 404
