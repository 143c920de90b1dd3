"""The short load test (``bench/load.py``'s load, bounded by work, not time): 20
annotators claim and submit at once through the API over real HTTP until the queue
is dry; no trace gets more than N labels, every answered submission is stored once,
and nothing answers 5xx."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from annotator.models import Membership, Role
from bench.common import database_name
from bench.load import invariant_failures, run_load
from tests.factories import make_trace


@pytest.mark.django_db(transaction=True)
def test_twenty_annotators_at_once_keep_the_queue_invariants(live_server, django_user_model):
    from annotator.models import Project

    project = Project.objects.create(slug="load", name="load", annotators_per_trace=2)
    for i in range(15):
        make_trace(project, ext=f"t{i}")
    tokens = {}
    for i in range(20):
        user = django_user_model.objects.create_user(f"annotator-{i}")
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        tokens[user.username] = Token.objects.create(user=user).key

    result = run_load(live_server.url, project.slug, tokens)

    assert invariant_failures(project, result) == []
    # The work was all done: every trace got its N labels.
    assert len(result.submissions) == 15 * 2


@pytest.mark.parametrize("bench", ["load", "import", "scoring"])
def test_each_bench_run_has_a_database_of_its_own(bench: str) -> None:
    """Two runs at once once shared ``stepwise_bench_<bench>``: the second one's set-up
    dropped the first one's database under it."""
    first, second = database_name(bench), database_name(bench)
    assert first != second
    for name in (first, second):
        assert name.startswith(f"stepwise_bench_{bench}_") and len(name) < 63  # PostgreSQL's
