"""The API against its own OpenAPI schema (schemathesis): generated requests to every
operation, as a project's owner and as an annotator, get no server error and, where
the schema documents the status, a body that matches it. Bounded to a few examples
per operation so CI stays fast."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from annotator.wsgi import application
from tests.factories import make_trace


@pytest.fixture
def in_process_wsgi():
    """Requests through the WSGI app in this process must not close the test's
    database connection at their end (Django's test client disconnects the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(project, users, in_process_wsgi):
    for i in range(3):
        make_trace(project, ext=f"t{i}", final_answer="4", final_answer_correct=True)
    token = Token.objects.create(user=users["owner"])
    return schemathesis.from_wsgi(
        "/api/v1/schema/?format=json",
        application,
        headers={"Authorization": f"Token {token.key}"},
    )


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_schema_and_never_fails(case, users, project) -> None:
    if "slug" in (case.path_parameters or {}):
        case.path_parameters["slug"] = project.slug  # a real project, mostly
    for role in ("owner", "annotator"):
        token, _ = Token.objects.get_or_create(user=users[role])
        response = case.call_wsgi(headers={"Authorization": f"Token {token.key}"})
        case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
