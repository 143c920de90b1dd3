"""The README's promise: every API error answers JSON ``{"detail", "code"}``, with
DEBUG on (the demo) as with it off, unknown URLs under ``/api/`` included."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def api_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:200]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    return body


@pytest.fixture(params=[True, False], ids=["debug", "production"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


def test_an_unknown_api_url_answers_json_with_or_without_login(debug, users, client) -> None:
    for who in (None, users["owner"]):
        for path in ("/api/v1/no-such-thing/", "/api/nothing/here/", "/api/"):
            assert error(api_for(who).get(path), 404)["code"] == "not_found"
            assert error(api_for(who).post(path, {}), 404)["code"] == "not_found"
    # Outside /api/ the site's own pages stay HTML, and a missing slash still redirects.
    client.force_login(users["owner"])
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert client.get("/api/v1/projects")["Location"] == "/api/v1/projects/"


def test_drf_errors_carry_a_code(debug, users, labelled) -> None:
    runs = f"/api/v1/projects/{labelled.slug}/training-runs/"
    assert error(api_for().get("/api/v1/projects/"), 401)["code"] == "not_authenticated"
    outsider = api_for(users["outsider"]).get(runs)
    assert error(outsider, 404)["code"] == "not_found"
    owner = api_for(users["owner"])
    refused = owner.post(runs, {"kind": "qwen-prm", "base_model": "b"}, format="json")
    assert error(refused, 403) == {
        "detail": "only staff owners start training runs",
        "code": "permission_denied",
    }
    users["owner"].is_staff = True
    users["owner"].save()
    invalid = error(owner.post(runs, {"kind": "nope", "base_model": "b"}, format="json"), 400)
    assert invalid["code"] == "invalid_choice"
    assert invalid["detail"].startswith("kind: ") and invalid["kind"]  # the field's errors stay
