"""A walk over the URL conf: every project URL needs login and membership; what
members see follows their ``Membership``."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from annotator.hiding import visible_metadata
from annotator.importing import import_file
from annotator.labelsets import create_label_set
from annotator.models import (
    Annotation,
    AnnotationKind,
    ImportJob,
    JobStatus,
    MCRollout,
    MonteCarloRun,
    ScoreImportJob,
    ScoringRun,
    Trace,
    TraceMC,
    TraceScore,
)
from tests.factories import PROCESSBENCH_GSM8K, make_trace

PUBLIC = {"login", "logout", "api-unknown"}  # api-unknown: a JSON 404 to anyone


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
    # The score import's URLs take a job_id too: one of the same id.
    ScoreImportJob.objects.create(
        pk=job.pk, project=project, created_by=users["owner"], file_name="s.jsonl", name="s"
    )
    membership = project.memberships.get(user=users["annotator"])
    # A run whose scorer was deleted: its provenance still names it (runs.html reads it).
    run = ScoringRun.objects.create(
        project=project, name="r", created_by=users["owner"], provenance={"scorer": "gone"}
    )
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


# ---------------------------------------------------------------- every role, every URL

MEMBER_STATUSES = {200, 302, 400, 403, 404, 405}  # 403: a site permission (new project)


def body(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


@pytest.fixture
def other_project(django_user_model):
    """A second project, owned by someone with no role in the first."""
    from annotator.models import Membership, Project, Role

    other = Project.objects.create(slug="other", name="OTHER-PROJECT-NAME")
    owner = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Membership.objects.create(project=other, user=owner, role=Role.OWNER)
    make_trace(other, ext="other-1", problem_text="OTHER-PROJECT-PROBLEM")
    return owner


@pytest.mark.parametrize("role", ["annotator", "reviewer", "owner"])
def test_every_url_answers_members_without_errors_or_other_projects_text(
    client_for, users, ids, other_project, role
):
    """GET on every URL (project and site pages, API) as each role of the project: a
    status the role may get, never a server error, and nothing of a project the user
    is not in."""
    client = client_for(users[role])
    for route, name in walk(get_resolver().url_patterns):
        if name in PUBLIC or name in ("api-schema", "api-docs", "api-redoc"):
            continue
        response = client.get(fill(route, ids))
        assert response.status_code in MEMBER_STATUSES, (
            f"GET /{route} ({name}) gave {response.status_code} to the {role}"
        )
        assert b"OTHER-PROJECT" not in body(response), f"/{route} ({name}) leaks to the {role}"


def test_the_owner_of_another_project_gets_nothing_of_this_one(client_for, ids, other_project):
    client = client_for(other_project)
    for route, name in project_urls():
        path = fill(route, ids)
        for method in ("get", "post"):
            status = getattr(client, method)(path).status_code
            assert status in (404, 405), f"{method.upper()} {path} ({name}) gave {status}"
    for route, name in walk(get_resolver().url_patterns):
        if "<" in route or name in PUBLIC:
            continue
        response = client.get("/" + route)
        assert response.status_code in MEMBER_STATUSES, f"GET /{route} ({name})"
        assert b"GSM8K labels" not in body(response), f"/{route} ({name}) shows the other project"


def test_creating_projects_is_a_site_permission(client, users, db, settings):
    from django.contrib.auth.models import Permission

    from annotator.models import Project

    url = reverse("project-create")
    new = {"name": "MATH", "slug": "math", "guidelines": ""}
    client.force_login(users["outsider"])
    assert client.get(url).status_code == 403
    assert client.post(url, new).status_code == 403
    assert not Project.objects.filter(slug="math").exists()
    users["outsider"].user_permissions.add(Permission.objects.get(codename="add_project"))
    assert client.post(url, new).status_code == 302
    client.force_login(users["annotator"])
    users["annotator"].is_staff = True
    users["annotator"].save()
    assert client.post(url, {**new, "slug": "math2"}).status_code == 302
    client.force_login(users["reviewer"])
    settings.ANYONE_MAY_CREATE_PROJECTS = True
    assert client.post(url, {**new, "slug": "math3"}).status_code == 302


# ---------------------------------------------------------------- hidden means hidden

HIDDEN = (
    b"REF-ANSWER-42",
    b"REFSTEP-SECRET",
    b"final answer correct",
    b"final answer wrong",
    b'<tr class="right">',  # a Monte-Carlo rollout's answer marked against the reference
    b"ROLLOUT-SAYS-42",
)


def leaks(response) -> list[bytes]:
    content = body(response)
    found = [value for value in HIDDEN if value in content]
    if response.get("Content-Type", "").startswith("application/json"):
        found += [b"final_answer_correct"] if b'"final_answer_correct":true' in content else []
    return found


@pytest.mark.parametrize("hidden", [True, False])
def test_annotators_see_nothing_of_a_hidden_reference_on_any_url(
    project, users, client_for, hidden
):
    """Walks every URL the annotator can reach, with each trace in turn: a model
    solution judged correct against the reference (with a Monte-Carlo rollout whose
    answer is marked right), and the reference solution itself. The project shows
    model scores, so the pages that show them are walked too."""
    project.show_reference_answer = not hidden
    project.show_model_scores = True
    project.save()
    solution = make_trace(
        project, reference_answer="REF-ANSWER-42", final_answer="4", final_answer_correct=True
    )
    mc_run = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:1", keep_rollouts=True
    )
    TraceMC.objects.create(
        run=mc_run, trace=solution, mc=[1.0] * 3, hard=[1] * 3, progress=[0.0] * 3, first_error=-1
    )
    MCRollout.objects.create(
        run=mc_run,
        trace=solution,
        step_index=0,
        sample=0,
        text="ROLLOUT-SAYS-42",
        answer="42",
        correct=True,
    )
    reference = make_trace(
        project, generator="reference", steps=["REFSTEP-SECRET one", "REFSTEP-SECRET two"]
    )
    client = client_for(users["annotator"])
    seen: dict[str, list[bytes]] = {}
    for trace in (solution, reference):
        ids = {"trace_id": trace.id, "job_id": 0, "run_id": 0, "annotation_id": 0}
        ids["membership_id"] = 0
        for route, name in walk(get_resolver().url_patterns):
            if name in PUBLIC or name in ("api-schema", "api-docs", "api-redoc"):
                continue
            response = client.get(fill(route, ids))
            if found := leaks(response):
                seen[f"/{route} ({name}) with trace {trace.external_id}"] = found
    if hidden:
        assert seen == {}
    else:  # the walk can see them: shown, they are found
        assert any(b"REFSTEP-SECRET" in found for found in seen.values())
        assert any(b"final answer correct" in found for found in seen.values())
        assert any(b"REF-ANSWER-42" in found for found in seen.values())
        assert any(b'<tr class="right">' in found for found in seen.values())


# ---------------------------------------------------------------- blind means blind


@pytest.fixture
def others_labels(project, users, django_user_model):
    """In a project that shows model scores: a trace labelled by everyone but the
    annotator (a label, a gold label, an adjudication, an imported label), one the
    annotator labelled, and a finished scoring run, Monte-Carlo run and label set over
    the first."""
    project.show_model_scores = True
    project.save()
    theirs = make_trace(project, ext="theirs")
    mine = make_trace(project, ext="mine")
    importer = django_user_model.objects.create_user("import-prm800k")
    for user, kind, external in (
        (users["owner"], AnnotationKind.LABEL, ""),
        (users["reviewer"], AnnotationKind.GOLD, ""),
        (users["reviewer"], AnnotationKind.ADJUDICATION, ""),
        (importer, AnnotationKind.LABEL, "labeller-7"),
    ):
        Annotation.objects.create(
            trace=theirs, annotator=user, kind=kind, external_annotator=external, first_error_step=1
        )
    Annotation.objects.create(trace=mine, annotator=users["annotator"], first_error_step=0)
    run = ScoringRun.objects.create(project=project, name="prm", status=JobStatus.DONE)
    TraceScore.objects.create(run=run, trace=theirs, predicted_first_error=1)
    mc_run = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:1", status=JobStatus.DONE
    )
    TraceMC.objects.create(
        run=mc_run,
        trace=theirs,
        mc=[1.0, 0.0, 0.0],
        hard=[1, 0, 0],
        progress=[0.0] * 3,
        first_error=1,
    )
    create_label_set(project, "humans", "human")
    return theirs, mine, run, mc_run


def label_column(client, project, **query) -> dict[str, str]:
    """``{external id: the Labels cell}`` of the project page's trace list."""
    html = client.get(reverse("project", args=[project.slug]), query).content.decode()
    return dict(
        re.findall(r">([\w-]+)</a></td>(?:\s*<td[^>]*>.*?</td>){4}\s*<td>(.*?)</td>", html, re.S)
    )


@pytest.mark.parametrize(("role", "blind"), [("annotator", True), ("reviewer", False)])
def test_the_labels_column_and_labelled_filter_count_only_labels_the_member_sees(
    project, users, client_for, others_labels, role, blind
):
    client = client_for(users[role])
    counts = label_column(client, project)
    if blind:  # their own label only: nothing of the owner's, gold, adjudication, import
        assert counts == {"theirs": '<span class="muted">—</span>', "mine": "1"}
        assert list(label_column(client, project, labelled="yes")) == ["mine"]
        assert list(label_column(client, project, labelled="no")) == ["theirs"]
    else:
        assert counts == {"theirs": "4", "mine": "1"}
        assert list(label_column(client, project, labelled="yes")) == ["theirs", "mine"]
        assert list(label_column(client, project, labelled="no")) == []


@pytest.mark.parametrize(("role", "blind"), [("annotator", True), ("reviewer", False)])
def test_run_pages_compare_with_human_labels_only_for_those_who_see_them(
    project, users, client_for, others_labels, role, blind
):
    """The ProcessBench table's per-split counts and "equals the human verdict on k of
    n" give away other people's labels."""
    _, _, run, mc_run = others_labels
    client = client_for(users[role])
    run_response = client.get(reverse("run", args=[project.slug, run.pk]))
    mc_response = client.get(reverse("mc-run", args=[project.slug, mc_run.pk]))
    sets_page = client.get(reverse("label-sets", args=[project.slug])).content
    shown = {
        "processbench": b'id="processbench"' in run_response.content,
        "mc agreement": b'id="mc-agreement"' in mc_response.content,
        "human label set": b'data-name="humans"' in sets_page,
    }
    assert shown == dict.fromkeys(shown, not blind)
    # Not computed either, so no template or partial can show them by mistake.
    computed = {
        "processbench": run_response.context["table"] != [],
        "mc agreement": mc_response.context["agreement"] is not None,
    }
    assert computed == dict.fromkeys(computed, not blind)


def test_metadata_keeps_imported_labellers_records_from_blind_members(project, users):
    metadata = {
        "finish_reason": "found_error",
        "quality_control": True,
        "initial_screening": False,
        "timestamp": "2022-07-17",
    }
    annotator = project.memberships.get(user=users["annotator"])
    reviewer = project.memberships.get(user=users["reviewer"])
    assert visible_metadata(annotator, metadata) == {"timestamp": "2022-07-17"}
    assert visible_metadata(reviewer, metadata) == metadata
    assert metadata["finish_reason"] == "found_error"  # the trace's own is left alone


def api_for(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.mark.parametrize(("role", "blind"), [("annotator", True), ("reviewer", False)])
def test_the_api_compares_with_human_labels_only_for_those_who_see_them(
    project, users, others_labels, role, blind
):
    """As the pages: the run's ProcessBench table, the human label set and ``?labelled=``
    over other people's labels give those labels away."""
    _, _, run, _ = others_labels
    api = api_for(users[role])
    base = f"/api/v1/projects/{project.slug}"
    run_data = api.get(f"{base}/runs/{run.pk}/").json()
    label_sets = [found["name"] for found in api.get(f"{base}/label-sets/").json()]

    def labelled(value: str) -> list[str]:
        found = api.get(f"{base}/traces/", {"labelled": value}).json()["results"]
        return [trace["external_id"] for trace in found]

    if blind:
        assert "processbench" not in run_data
        assert label_sets == []
        assert (labelled("yes"), labelled("no")) == (["mine"], ["theirs"])
    else:
        assert [row["split"] for row in run_data["processbench"]][0] == "(no split)"
        assert label_sets == ["humans"]
        assert (labelled("yes"), labelled("no")) == (["theirs", "mine"], [])


@pytest.mark.parametrize(("role", "blind"), [("annotator", True), ("reviewer", False)])
def test_the_api_keeps_imported_labellers_records_from_blind_members(project, users, role, blind):
    """PRM800K's ``finish_reason`` ("found_error") is the imported label itself."""
    labelled = {"finish_reason": "found_error", "quality_control": True}
    trace = make_trace(project, metadata={**labelled, "timestamp": "2022-07-17"})
    api = api_for(users[role])
    base = f"/api/v1/projects/{project.slug}/traces"
    listed = api.get(f"{base}/").json()["results"][0]["metadata"]
    detail = api.get(f"{base}/{trace.pk}/").json()["metadata"]
    expected = {"timestamp": "2022-07-17"} if blind else {**labelled, "timestamp": "2022-07-17"}
    assert listed == detail == expected
