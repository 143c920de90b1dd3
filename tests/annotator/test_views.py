"""Project and trace pages, import and export views: login, membership, escaping."""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.importing import import_file
from annotator.models import Annotation, ImportJob, Step, Trace
from tests.factories import PROCESSBENCH_GSM8K


@pytest.fixture
def traces(project, data_dir):
    import_file(project, PROCESSBENCH_GSM8K)
    import_file(project, data_dir / "gsm8k" / "example_model_solutions.jsonl")
    return Trace.objects.filter(project=project)


def test_login_page_is_public(client, db):
    assert client.get(reverse("login")).status_code == 200


def test_every_page_links_a_favicon_that_is_served(client, client_for, users, project):
    for page in (client_for(users["owner"]).get(reverse("home")), client.get(reverse("login"))):
        [href] = re.findall(rb'<link rel="icon" href="([^"]+)">', page.content)
        icon = client_for(users["owner"]).get(href.decode())
        assert icon.status_code == 200
        assert b"".join(icon.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header


@pytest.mark.parametrize("name", ["home", "project", "trace", "import", "export"])
def test_it_requires_login(client, traces, name):
    kwargs = {"home": {}, "trace": {"slug": "gsm8k", "trace_id": traces.first().id}}.get(
        name, {"slug": "gsm8k"}
    )
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["project", "trace", "import", "export"])
def test_it_checks_membership(client_for, users, traces, name):
    kwargs = (
        {"slug": "gsm8k", "trace_id": traces.first().id} if name == "trace" else {"slug": "gsm8k"}
    )
    response = client_for(users["outsider"]).get(reverse(name, kwargs=kwargs))
    assert response.status_code == 404


def test_import_and_export_need_the_right_role(client_for, users, traces):
    client = client_for(users["annotator"])
    assert client.get(reverse("import", args=["gsm8k"])).status_code == 404
    assert client.get(reverse("export", args=["gsm8k"])).status_code == 404
    assert (
        client_for(users["reviewer"])
        .get(reverse("export", args=["gsm8k"]), {"format": "trl"})
        .status_code
        == 200
    )


def test_home_lists_only_my_projects(client_for, users, project):
    assert b"GSM8K labels" in client_for(users["annotator"]).get("/").content
    assert b"GSM8K labels" not in client_for(users["outsider"]).get("/").content


def test_project_page_lists_and_filters_traces(
    client_for, users, traces, django_assert_max_num_queries
):
    client = client_for(users["owner"])
    response = client.get(reverse("project", args=["gsm8k"]))
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 400 + 4 * 1319

    response = client.get(reverse("project", args=["gsm8k"]), {"split": "gsm8k"})
    assert response.context["page"].paginator.count == 400
    response = client.get(reverse("project", args=["gsm8k"]), {"generator": "6b_finetuning"})
    assert response.context["page"].paginator.count == 1319
    response = client.get(reverse("project", args=["gsm8k"]), {"labelled": "no"})
    assert response.context["page"].paginator.count == 4 * 1319
    response = client.get(reverse("project", args=["gsm8k"]), {"labelled": "yes", "page": 2})
    assert {t.external_id for t, _ in response.context["rows"]} <= set(
        traces.filter(source="processbench").values_list("external_id", flat=True)
    )

    # One query more than the rows' own: the label sets the Download form offers.
    with django_assert_max_num_queries(13):
        client.get(reverse("project", args=["gsm8k"]), {"page": 3})


def test_project_filter_returns_the_table_partial_to_htmx(client_for, users, traces):
    response = client_for(users["owner"]).get(
        reverse("project", args=["gsm8k"]), {"split": "gsm8k"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="trace-table">')
    assert "<html" not in body


def test_trace_page_shows_problem_steps_and_labels(client_for, users, traces):
    record = json.loads(PROCESSBENCH_GSM8K.read_text())[3]
    trace = traces.get(external_id=record["id"])
    response = client_for(users["owner"]).get(reverse("trace", args=["gsm8k", trace.id]))
    assert response.status_code == 200
    assert response.context["trace"].step_texts == record["steps"]
    assert [a.first_error_step for a in response.context["annotations"]] == [record["label"]]
    assert b"katex.min.js" in response.content


def test_annotators_see_only_their_own_labels(client_for, users, traces):
    trace = traces.filter(source="processbench").first()
    Annotation.objects.create(trace=trace, annotator=users["annotator"], first_error_step=1)
    response = client_for(users["annotator"]).get(reverse("trace", args=["gsm8k", trace.id]))
    assert [a.annotator for a in response.context["annotations"]] == [users["annotator"]]


def test_trace_text_is_escaped(client_for, users, traces):
    trace = traces.first()
    Step.objects.filter(trace=trace, index=0).update(
        text="<script>alert(1)</script> <img src=x onerror=alert(1)>"
    )
    body = (
        client_for(users["owner"]).get(reverse("trace", args=["gsm8k", trace.id])).content.decode()
    )
    assert "<script>alert(1)</script>" not in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;" in body


def test_a_trace_of_another_project_is_404(client_for, users, traces, django_user_model):
    from annotator.models import Membership, Project, Role

    other = Project.objects.create(slug="other", name="Other")
    Membership.objects.create(project=other, user=users["owner"], role=Role.OWNER)
    response = client_for(users["owner"]).get(reverse("trace", args=["other", traces.first().id]))
    assert response.status_code == 404


def test_upload_form_queues_an_import_job(client_for, users, project):
    from annotator.celery import app

    broker = app.connection_for_write().default_channel.client
    queued_before = broker.llen("default")
    upload = SimpleUploadedFile("gsm8k.json", PROCESSBENCH_GSM8K.read_bytes())
    client = client_for(users["owner"])
    response = client.post(
        reverse("import", args=["gsm8k"]),
        {"file": upload, "format": "auto", "step_splitter": "paragraphs"},
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("import-job", args=["gsm8k", job.id])
    assert job.status == "queued" and job.file_name == "gsm8k.json" and job.queued_at
    # The message is on the real broker; tests/jobs runs such jobs on a real worker.
    assert broker.llen("default") == queued_before + 1
    page = client.get(response["Location"])
    assert b"Waiting for a worker" in page.content
    assert b'hx-trigger="every 1s"' in page.content


def test_export_download_streams_jsonl_and_parquet(client_for, users, traces):
    client = client_for(users["owner"])
    response = client.get(
        reverse("export", args=["gsm8k"]), {"format": "processbench", "split": "gsm8k"}
    )
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(PROCESSBENCH_GSM8K.read_text())

    response = client.get(reverse("export", args=["gsm8k"]), {"format": "trl", "file": "parquet"})
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:4] == b"PAR1"

    assert client.get(reverse("export", args=["gsm8k"]), {"format": "nope"}).status_code == 400
