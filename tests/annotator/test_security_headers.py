"""Every response carries the Content-Security-Policy (``annotator/csp.py``), and the
API's documentation pages load nothing from another host (Redoc's Google Fonts are
dropped)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from annotator.importing import import_file
from annotator.models import Annotation, ImportJob, ScoringRun, Trace
from tests.factories import PROCESSBENCH_GSM8K


def routes(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


@pytest.fixture
def ids(project, users):
    import_file(project, PROCESSBENCH_GSM8K)
    trace = Trace.objects.filter(project=project).first()
    job = ImportJob.objects.create(
        project=project, created_by=users["owner"], file_name="x.json", upload="nonexistent"
    )
    run = ScoringRun.objects.create(
        project=project, name="r", created_by=users["owner"], provenance={"scorer": "gone"}
    )
    return {
        "slug": project.slug,
        "trace_id": trace.id,
        "annotation_id": Annotation.objects.filter(trace=trace).first().id,
        "job_id": job.id,
        "membership_id": project.memberships.get(user=users["annotator"]).id,
        "run_id": run.id,
    }


def fill(route: str, ids: dict) -> str:
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), route)
    return "/" + path


def test_every_page_sends_the_content_security_policy(client, client_for, users, ids):
    """Every URL of the URL conf, as the owner and logged out, whatever its status."""
    assert "default-src 'self'" in settings.CONTENT_SECURITY_POLICY
    seen = 0
    for as_user in (users["owner"], None):
        http = client_for(as_user) if as_user else client
        for route, name in routes(get_resolver().url_patterns):
            if not route or "(?P" in route:
                continue  # the admin's regex routes; its index is checked below
            response = http.get(fill(route, ids))
            assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY, (
                route,
                name,
                response.status_code,
            )
            seen += 1
    for path in ("/", "/admin/", "/no-such-page/", "/api/v1/no-such-thing/"):
        assert client.get(path)["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert seen > 100


@pytest.mark.parametrize("name", ["redoc", "docs"])
def test_the_api_documentation_loads_nothing_from_another_host(client_for, users, db, name):
    response = client_for(users["owner"]).get(f"/api/v1/{name}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script" in html  # the page itself, not a login redirect
    assert re.findall(r"""(?:src|href)=["'](?:https?:)?//""", html) == []
    assert "fonts.googleapis" not in html and "fonts.gstatic" not in html
