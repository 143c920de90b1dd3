"""Sampled solutions and the labelling queue: a sampling run's traces (thousands, for the
curves) are not served by "next" unless the run was started with "add to the labelling
queue"; the project's other traces are served as before, and a sampled solution can
still be labelled from its own page."""

from __future__ import annotations

import pytest

from annotator import queue
from annotator.models import Membership, Role, SampledSolution, Trace
from tests.factories import solved_runs

pytestmark = pytest.mark.django_db


def served(project, user) -> list[int]:
    """Every trace "next" serves the user, skipping each in turn."""
    ids: list[int] = []
    for _ in range(100):
        trace = queue.claim_next(project, user).trace
        if trace is None:
            return ids
        ids.append(trace.pk)
        queue.skip(project, trace, user)
    raise AssertionError("the queue never ran out")


def test_sampled_solutions_join_the_queue_only_when_the_run_says_so(
    project, users, django_user_model
) -> None:
    sampling_run, _ = solved_runs(project, users["owner"], problems=3, n=4)
    sampled = set(
        SampledSolution.objects.filter(run=sampling_run).values_list("trace_id", flat=True)
    )
    regular = set(Trace.objects.filter(project=project).values_list("pk", flat=True)) - sampled
    assert len(sampled) == 12 and len(regular) == 3
    assert not sampling_run.labelling_queue
    assert set(served(project, users["annotator"])) == regular

    sampling_run.labelling_queue = True
    sampling_run.save(update_fields=["labelling_queue"])
    other = django_user_model.objects.create_user("ada", password="pw-ada-123")
    Membership.objects.create(project=project, user=other, role=Role.ANNOTATOR)
    assert set(served(project, other)) == regular | sampled

    # out of the queue is not out of reach: a sampled solution opened on its own page
    sampling_run.labelling_queue = False
    sampling_run.save(update_fields=["labelling_queue"])
    one = Trace.objects.get(pk=min(sampled))
    assert queue.may_label(project, one, users["annotator"])
    queue.claim_trace(project, one, users["annotator"])
    assert queue.holds_trace(one, users["annotator"])
