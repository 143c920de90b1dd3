"""The queue: breadth-first overlap, holds, skips, orders, gold questions, screening,
and claims by concurrent annotators on PostgreSQL."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator import quality, queue
from annotator.labelling import Label, submit_label
from annotator.models import (
    Annotation,
    AnnotationKind,
    Assignment,
    Membership,
    Project,
    QueueOrder,
    Role,
    Trace,
)
from tests.factories import HTMX, make_trace, served_id

ALL_CORRECT = Label(-1, [1, 1, 1])


@pytest.fixture
def people(project, django_user_model):
    made = []
    for name in ("ann", "ben", "cat"):
        user = django_user_model.objects.create_user(name)
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        made.append(user)
    return made


def label(project, trace, user, first_error=-1):
    ratings = [1] * trace.num_steps if first_error == -1 else None
    return submit_label(project, trace, user, Label(first_error, ratings))


def test_it_serves_in_import_order(project, people):
    traces = [make_trace(project, ext=f"t{i}") for i in range(3)]
    served = queue.claim_next(project, people[0])
    assert served.trace == traces[0]
    label(project, traces[0], people[0])
    assert queue.claim_next(project, people[0]).trace == traces[1]


def test_it_finishes_the_overlap_before_new_traces(project, people):
    project.annotators_per_trace = 2
    project.save()
    traces = [make_trace(project, ext=f"t{i}") for i in range(3)]
    label(project, traces[2], people[0])  # labelled out of order, e.g. opened by link
    assert queue.claim_next(project, people[1]).trace == traces[2]


def test_it_never_gives_a_trace_more_annotators_than_asked(project, people):
    project.annotators_per_trace = 2
    project.save()
    trace = make_trace(project)
    label(project, trace, people[0])
    label(project, trace, people[1])
    trace.refresh_from_db()
    assert trace.label_count == 2
    served = queue.claim_next(project, people[2])
    assert served.trace is None and served.reason == "done"


def test_it_does_not_count_imported_labels(project, people, django_user_model):
    importer = django_user_model.objects.create_user("import-processbench", is_active=False)
    trace = make_trace(project)
    Annotation.objects.create(trace=trace, annotator=importer, first_error_step=1)
    assert queue.claim_next(project, people[0]).trace == trace


def test_it_holds_a_trace_until_the_lock_expires(project, people):
    trace = make_trace(project)
    now = timezone.now()
    assert queue.claim_next(project, people[0], now=now).trace == trace
    assert queue.claim_next(project, people[1], now=now + timedelta(minutes=9)).trace is None
    later = now + timedelta(minutes=project.lock_minutes, seconds=1)
    assert queue.claim_next(project, people[1], now=later).trace == trace


def test_it_releases_the_hold_on_submit_and_on_skip(project, people):
    project.annotators_per_trace = 2
    project.save()
    trace = make_trace(project)
    assert queue.claim_next(project, people[0]).trace == trace
    assert queue.claim_next(project, people[1]).trace == trace
    assert queue.claim_next(project, people[2]).trace is None  # two live holds fill it
    queue.skip(project, trace, people[0])
    assert queue.claim_next(project, people[2]).trace == trace
    label(project, trace, people[1])
    assert not Assignment.objects.filter(annotator=people[1]).exists()
    assert queue.claim_next(project, people[0]).trace is None  # skipped for good


def test_it_orders_randomly_with_a_seed(project, people):
    traces = [make_trace(project, ext=f"t{i}") for i in range(30)]

    def order() -> list[int]:
        queue.ensure_ranked(project)
        return list(
            Trace.objects.filter(project=project)
            .order_by("queue_rank", "id")
            .values_list("id", flat=True)
        )

    assert order() == [t.pk for t in traces]
    project.queue_order = QueueOrder.RANDOM
    project.queue_seed = 7
    project.save()
    seven = order()
    assert sorted(seven) == [t.pk for t in traces] and seven != [t.pk for t in traces]
    assert queue.claim_next(project, people[0]).trace.pk == seven[0]
    project.queue_seed = 8
    project.save()
    eight = order()
    assert eight != seven
    project.queue_seed = 7
    project.save()
    assert order() == seven
    late = make_trace(project, ext="late")
    assert late.pk in order()
    assert Trace.objects.get(pk=late.pk).queue_rank is not None


def test_it_mixes_in_gold_questions_for_everyone(project, people):
    regular = make_trace(project, ext="regular")
    other = make_trace(project, ext="other")
    gold = make_trace(project, ext="gold", is_gold=True)
    project.gold_rate = 1.0
    project.save()
    assert queue.claim_next(project, people[0]).trace == gold
    assert queue.claim_next(project, people[1]).trace == gold  # gold has no overlap limit
    label(project, gold, people[0])
    assert queue.claim_next(project, people[0]).trace == regular
    project.gold_rate = 0.0
    project.save()
    assert queue.claim_next(project, people[2]).trace == other  # not the gold one


def _gold(project, reviewer, ext, first_error):
    trace = make_trace(project, ext=ext, is_gold=True)
    Annotation.objects.create(
        trace=trace, annotator=reviewer, kind=AnnotationKind.GOLD, first_error_step=first_error
    )
    return trace


def test_it_screens_new_annotators_with_gold_questions(project, people, users):
    regular = make_trace(project, ext="regular")
    g1 = _gold(project, users["reviewer"], "g1", 1)
    g2 = _gold(project, users["reviewer"], "g2", -1)
    project.screening_questions = 2
    project.screening_accuracy = 1.0
    project.save()
    ann, ben = people[0], people[1]
    assert queue.claim_next(project, ann).trace == g1
    label(project, g1, ann, first_error=1)
    assert queue.claim_next(project, ann).trace == g2
    label(project, g2, ann, first_error=-1)
    assert queue.claim_next(project, ann).trace == regular  # passed

    label(project, g1, ben, first_error=0)  # wrong
    label(project, g2, ben, first_error=-1)
    served = queue.claim_next(project, ben)
    assert served.trace is None and served.reason == "screening-failed"
    assert (served.screening.answered, served.screening.correct) == (2, 1)
    response = Client()
    response.force_login(ben)
    page = response.get(reverse("annotate", args=[project.slug]))
    assert b"Screening not passed" in page.content


def _screening_project(project, users, questions=2):
    regular = make_trace(project, ext="regular")
    gold = [_gold(project, users["reviewer"], f"g{i}", -1) for i in range(questions)]
    project.screening_questions = questions
    project.screening_accuracy = 1.0
    project.save()
    return regular, gold


def test_skipping_screening_questions_counts_as_missing_them(project, people, users):
    regular, (g0, g1) = _screening_project(project, users)
    ann = people[0]
    queue.skip(project, g0, ann)
    queue.skip(project, g1, ann)
    served = queue.claim_next(project, ann)
    assert served.trace is None and served.reason == "screening-failed"
    assert quality.gold_answers(project, ann) == (2, 0)


def test_screening_judges_the_first_answer_to_a_gold_question(project, people, users):
    regular, (g0, g1) = _screening_project(project, users)
    ann = people[0]
    label(project, g0, ann, first_error=0)  # wrong
    label(project, g0, ann, first_error=-1)  # an edit after the fact does not count
    label(project, g1, ann, first_error=-1)
    assert quality.gold_answers(project, ann) == (2, 1)
    assert queue.claim_next(project, ann).reason == "screening-failed"


def test_an_unscreened_annotator_cannot_label_regular_traces_by_url(
    project, people, users, client_for
):
    regular, (g0, g1) = _screening_project(project, users)
    ann = people[0]
    client = client_for(ann)
    page = client.get(reverse("annotate-trace", args=[project.slug, regular.pk]))
    assert page.status_code == 302 and page.url == reverse("annotate", args=[project.slug])
    submit = reverse("annotate-submit", args=[project.slug, regular.pk])
    refused = client.post(submit, {"first_error_step": "-1"}, **HTMX)
    assert refused.status_code == 422
    assert b"screening questions" in refused.content
    assert not Annotation.objects.filter(trace=regular).exists()
    # Gold questions stay open to them, and after passing, so does the regular trace.
    for gold in (g0, g1):
        url = reverse("annotate-submit", args=[project.slug, gold.pk])
        assert client.post(url, {"first_error_step": "-1"}, **HTMX).status_code == 200
    assert client.post(submit, {"first_error_step": "-1"}, **HTMX).status_code == 200
    assert Annotation.objects.filter(trace=regular, annotator=ann).count() == 1


# ------------------------------------------------------------------ concurrency


def _parallel_claims(project: Project, users: list, rounds: int) -> dict[int, set[int]]:
    """Each user, in its own thread and database connection, asks for a trace and
    labels it, ``rounds`` times, all threads starting each round together. Returns
    {trace id: ids of the users it was served to}."""
    served: dict[int, set[int]] = defaultdict(set)
    lock = threading.Lock()
    barrier = threading.Barrier(len(users))
    errors: list[BaseException] = []

    def work(user):
        try:
            client = Client()
            client.force_login(user)
            for _ in range(rounds):
                barrier.wait(timeout=30)
                response = client.post(reverse("annotate-claim", args=[project.slug]), **HTMX)
                assert response.status_code == 200
                trace_id = served_id(response)
                if trace_id is None:
                    continue
                with lock:
                    served[trace_id].add(user.pk)
                url = reverse("annotate-submit", args=[project.slug, trace_id])
                assert client.post(url, {"first_error_step": "-1"}, **HTMX).status_code == 200
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return served


@pytest.fixture
def ten(transactional_db, django_user_model):
    project = Project.objects.create(slug="race", name="Race")
    users = []
    for i in range(10):
        user = django_user_model.objects.create_user(f"racer{i}")
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user)
    return project, users


def test_it_never_serves_one_trace_to_two_annotators_at_once(ten):
    project, users = ten
    for i in range(40):
        make_trace(project, ext=f"r{i}")
    served = _parallel_claims(project, users, rounds=3)
    assert sum(len(who) for who in served.values()) == 30
    assert all(len(who) == 1 for who in served.values()), served
    counts = Trace.objects.filter(project=project).values_list("label_count", flat=True)
    assert max(counts) == 1 and sum(counts) == 30


def test_it_never_gives_a_trace_a_third_annotator_with_overlap_two(ten):
    project, users = ten
    project.annotators_per_trace = 2
    project.save()
    for i in range(12):
        make_trace(project, ext=f"r{i}")
    served = _parallel_claims(project, users, rounds=3)
    assert sum(len(who) for who in served.values()) == 24  # 12 traces x 2, then nothing left
    assert all(len(who) == 2 for who in served.values()), served
    per_trace = defaultdict(int)
    for trace_id in Annotation.objects.filter(trace__project=project).values_list(
        "trace_id", flat=True
    ):
        per_trace[trace_id] += 1
    assert max(per_trace.values()) == 2
