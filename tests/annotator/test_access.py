"""A walk over the URL conf: every project URL needs login and membership; what
members see follows their ``Membership``."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from annotator.importing import import_file
from annotator.models import Annotation, ImportJob, ScoringRun, Trace
from tests.annotator.test_annotate import make_trace
from tests.conftest import PROCESSBENCH_GSM8K

PUBLIC = {"login", "logout"}


def walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # Django's admin has its own staff checks
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def project_urls():
    return [
        (route, name) for route, name in walk(get_resolver().url_patterns) if "<slug:slug>" in route
    ]


def fill(route: str, ids: dict[str, int]) -> str:
    path = route.replace("<slug:slug>", "gsm8k")
    for key, value in ids.items():
        path = path.replace(f"<int:{key}>", str(value))
    assert "<" not in path, f"no test value for a parameter of {route}"
    return "/" + path


@pytest.fixture
def ids(project, users):
    import_file(project, PROCESSBENCH_GSM8K)
    trace = Trace.objects.filter(project=project).first()
    annotation = Annotation.objects.filter(trace=trace).first()
    job = ImportJob.objects.create(
        project=project, created_by=users["owner"], file_name="x.json", upload="nonexistent"
    )
    membership = project.memberships.get(user=users["annotator"])
    run = ScoringRun.objects.create(project=project, name="r", created_by=users["owner"])
    return {
        "trace_id": trace.id,
        "annotation_id": annotation.id,
        "job_id": job.id,
        "membership_id": membership.id,
        "run_id": run.id,
    }


def test_the_walk_finds_the_project_urls():
    names = {name for _, name in project_urls()}
    assert {"project", "trace", "import", "export", "api-traces", "api-export"} <= names


def test_every_project_url_refuses_outsiders(client_for, users, ids):
    client = client_for(users["outsider"])
    for route, name in project_urls():
        path = fill(route, ids)
        for method in ("get", "post"):
            status = getattr(client, method)(path).status_code
            # 405 answers a wrong method before any lookup, so it reveals nothing either.
            assert status in (404, 405), (
                f"{method.upper()} {path} ({name}) gave {status} to an outsider"
            )


def test_every_project_url_needs_login(client, ids):
    for route, name in project_urls():
        path = fill(route, ids)
        status = client.get(path).status_code
        if route.startswith("api/"):
            assert status in (401, 403), f"GET {path} ({name}) gave {status} without login"
        else:
            assert status in (302, 405), f"GET {path} ({name}) gave {status} without login"
            if status == 302:
                assert client.get(path)["Location"].startswith("/login/")


def test_non_project_pages_need_login(client, db):
    for route, name in walk(get_resolver().url_patterns):
        if "<" in route or name in PUBLIC:
            continue
        status = client.get("/" + route).status_code
        expected = (401, 403) if route.startswith("api/") else (302,)
        assert status in expected, f"GET /{route} ({name}) gave {status} without login"


SURFACES = ("trace page", "workspace", "api list", "api detail")


def reference_answer_shown(client, user, project, trace) -> dict[str, bool]:
    """Whether each surface that shows a trace to ``user`` shows its reference answer."""
    api = APIClient()
    api.force_authenticate(user)
    pages = {
        "trace page": reverse("trace", args=[project.slug, trace.pk]),
        "workspace": reverse("annotate-trace", args=[project.slug, trace.pk]),
    }
    shown = {name: b"REF-ANSWER-42" in client.get(url).content for name, url in pages.items()}
    listed = api.get(f"/api/v1/projects/{project.slug}/traces/").json()["results"]
    shown["api list"] = listed[0]["reference_answer"] == "REF-ANSWER-42"
    detail = api.get(f"/api/v1/projects/{project.slug}/traces/{trace.pk}/").json()
    shown["api detail"] = detail["reference_answer"] == "REF-ANSWER-42"
    return shown


@pytest.mark.parametrize(("role", "hidden_from_it"), [("annotator", True), ("reviewer", False)])
def test_it_hides_the_reference_answer_from_annotators(
    project, users, client_for, role, hidden_from_it
):
    trace = make_trace(project, reference_answer="REF-ANSWER-42")
    user = users[role]
    client = client_for(user)
    shown = reference_answer_shown(client, user, project, trace)
    assert shown == dict.fromkeys(SURFACES, True)
    project.show_reference_answer = False
    project.save()
    shown = reference_answer_shown(client, user, project, trace)
    assert shown == dict.fromkeys(SURFACES, not hidden_from_it)
