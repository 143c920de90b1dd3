"""A NUL byte in a filter or in free text answers 400 naming the field, never 500:
PostgreSQL refuses NUL in text, so it must not reach a query."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator.models import (
    Annotation,
    AnnotationKind,
    JobStatus,
    MonteCarloRun,
    Review,
    ScoringRun,
)
from tests.factories import make_trace

pytestmark = pytest.mark.django_db

FILTERS = ("split", "generator", "source")
# (URL name, whether it takes a run id): every page that parses the trace filters.
FILTER_PAGES = (
    ("project", None),
    ("export", None),
    ("dashboard", None),
    ("dashboard-runs", None),
    ("dashboard-best-of-n", None),
    ("dashboard-run", "scoring"),
    ("dashboard-run-best-of-n", "scoring"),
    ("dashboard-disagreements", "scoring"),
    ("dashboard-mc-disagreements", "mc"),
)


@pytest.fixture
def labelled(project, users):
    """A labelled trace, and a finished scoring run and Monte-Carlo run, so that every
    page gets as far as querying its traces."""
    trace = make_trace(project, split="test", generator="g")
    annotation = Annotation.objects.create(
        trace=trace, annotator=users["annotator"], kind=AnnotationKind.LABEL, first_error_step=1
    )
    runs = {
        "scoring": ScoringRun.objects.create(project=project, name="s", status=JobStatus.DONE),
        "mc": MonteCarloRun.objects.create(
            project=project, name="m", completer="openai:http://127.0.0.1:1", status=JobStatus.DONE
        ),
    }
    return trace, annotation, runs


@pytest.fixture
def owner_client(client_for, users):
    client = client_for(users["owner"])
    client.raise_request_exception = False  # the old code's 500, not the exception
    return client


@pytest.mark.parametrize("field", FILTERS)
@pytest.mark.parametrize(("name", "run"), FILTER_PAGES)
def test_a_nul_byte_in_a_trace_filter_answers_400_naming_it(
    project, labelled, owner_client, name, run, field
):
    args = [project.slug] + ([labelled[2][run].pk] if run else [])
    response = owner_client.get(reverse(name, args=args), {field: "test\x00"})
    assert response.status_code == 400, response.content[:300]
    assert field.encode() in response.content
    assert b"NUL" in response.content


@pytest.mark.parametrize("field", FILTERS)
@pytest.mark.parametrize("name", ["api-traces", "api-export"])
def test_a_nul_byte_in_a_trace_filter_of_the_api_answers_400_naming_it(
    project, labelled, owner_client, name, field
):
    response = owner_client.get(reverse(name, args=[project.slug]), {field: "test\x00"})
    assert response.status_code == 400, response.content[:300]
    assert field.encode() in response.content
    assert b"NUL" in response.content


def test_the_api_filters_still_filter(project, labelled, owner_client):
    url = reverse("api-traces", args=[project.slug])

    def listed(**query: str) -> list[int]:
        return [trace["id"] for trace in owner_client.get(url, query).json()["results"]]

    assert listed(split="test", generator="g", source="test") == [labelled[0].pk]
    assert listed(split="train") == listed(generator="other") == listed(source="other") == []


def test_the_filters_still_filter(project, labelled, owner_client):
    trace = labelled[0]
    url = reverse("project", args=[project.slug])
    shown = reverse("trace", args=[project.slug, trace.pk]).encode()
    assert shown in owner_client.get(url, {"split": "test", "source": "test"}).content
    assert shown not in owner_client.get(url, {"split": "train"}).content
    assert shown not in owner_client.get(url, {"source": "elsewhere"}).content


@pytest.mark.parametrize(
    ("name", "field", "data"),
    [
        ("review-adjudicate", "note", {"first_error_step": "0"}),
        ("review-send-back", "comment", {}),
        ("review-annotation", "comment", {"decision": "accept"}),
    ],
)
def test_a_nul_byte_in_free_text_answers_400_naming_it_and_stores_nothing(
    project, labelled, owner_client, name, field, data
):
    trace, annotation, _ = labelled
    target = annotation.pk if name == "review-annotation" else trace.pk
    url = reverse(name, args=[project.slug, target])
    before = (Annotation.objects.count(), Review.objects.count())
    response = owner_client.post(url, {**data, field: "looks\x00fine"})
    assert response.status_code == 400, response.content[:300]
    assert field.encode() in response.content
    assert (Annotation.objects.count(), Review.objects.count()) == before
    # Without the NUL the same request is taken.
    assert owner_client.post(url, {**data, field: "looks fine"}).status_code == 302
