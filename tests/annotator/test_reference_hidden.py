"""A project that hides its reference answers never lists nor serves its reference
solutions to annotators (they end in the answer)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator import queue
from tests.factories import make_trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def hidden(project):
    project.show_reference_answer = False
    project.save()
    reference = make_trace(project, ext="ref-1", generator="reference")
    solution = make_trace(project, ext="sol-1", generator="gpt-4o")
    return project, reference, solution


def test_the_project_page_lists_no_reference_trace_to_annotators(hidden, client_for, users):
    project, reference, solution = hidden
    page = client_for(users["annotator"]).get(reverse("project", args=[project.slug]))
    assert reverse("trace", args=[project.slug, solution.pk]).encode() in page.content
    assert reverse("trace", args=[project.slug, reference.pk]).encode() not in page.content
    page = client_for(users["reviewer"]).get(reverse("project", args=[project.slug]))
    assert reverse("trace", args=[project.slug, reference.pk]).encode() in page.content


def test_the_queue_never_serves_a_hidden_reference_trace(hidden, users):
    project, reference, solution = hidden
    served = queue.claim_next(project, users["annotator"])
    assert served.trace == solution
    project.annotators_per_trace = 1
    project.save()
    assert queue.claim_next(project, users["reviewer"]).trace is None  # only the reference left


def test_the_queue_serves_reference_traces_where_answers_are_shown(hidden, users):
    project, reference, solution = hidden
    project.show_reference_answer = True
    project.save()
    served = {queue.claim_next(project, users[who]).trace for who in ("annotator", "reviewer")}
    assert reference in served
