"""Two identical submits of one label at once (a double press, two tabs, a client that
retries), each on its own database connection: both are answered, never a 500, and the
trace ends with one latest label, versions 1 and 2, counted once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotator import queue
from annotator.models import Annotation, Assignment
from tests.factories import make_trace

ROUNDS = 30


def _submit_at_once(clients: list, url: str, body: dict, **extra) -> list[int]:
    """POST ``body`` to ``url`` from every client in its own thread (so on its own
    connection), released together; the status codes, in client order."""
    start = threading.Barrier(len(clients))
    answers: list = [None] * len(clients)

    def submit(i: int) -> None:
        try:
            start.wait()
            answers[i] = clients[i].post(url, body, **extra).status_code
        except Exception as exc:  # a server error raised through the test client
            answers[i] = repr(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _assert_one_label_counted_once(trace, user) -> None:
    labels = Annotation.objects.filter(trace=trace, annotator=user)
    assert sorted(labels.values_list("version", "is_latest")) == [(1, False), (2, True)]
    trace.refresh_from_db()
    assert trace.label_count == 1
    assert not Assignment.objects.filter(trace=trace).exists()


@pytest.mark.django_db(transaction=True)
def test_two_identical_api_submits_at_once_both_store_a_version(project, users) -> None:
    alan = users["annotator"]
    clients = []
    for _ in range(2):
        client = APIClient()
        client.force_authenticate(alan)
        clients.append(client)
    for round_ in range(ROUNDS):
        trace = make_trace(project, 3, ext=f"api-{round_}")
        queue.claim_trace(project, trace, alan)
        url = reverse("api-label", args=[project.slug, trace.pk])
        body = {"first_error_step": 1}
        answers = _submit_at_once(clients, url, body, format="json")
        assert answers == [201, 201], f"round {round_}: {answers}"
        _assert_one_label_counted_once(trace, alan)


@pytest.mark.django_db(transaction=True)
def test_two_identical_page_submits_at_once_both_store_a_version(project, users) -> None:
    alan = users["annotator"]
    clients = []
    for _ in range(2):
        client = Client()
        client.force_login(alan)
        clients.append(client)
    for round_ in range(ROUNDS):
        trace = make_trace(project, 3, ext=f"page-{round_}")
        queue.claim_trace(project, trace, alan)
        url = reverse("annotate-submit", args=[project.slug, trace.pk])
        form = {"first_error_step": "1", "served_at": "0"}
        answers = _submit_at_once(clients, url, form)
        assert answers == [302, 302], f"round {round_}: {answers}"
        _assert_one_label_counted_once(trace, alan)
