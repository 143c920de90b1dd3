"""Migration 0014 gives the scorers that training runs registered before it their run's
project, so a model trained on one project's labels stops being offered to the others."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("annotator", "0013_trace_project_id_index")]
AFTER = [("annotator", "0014_scorer_project")]


def test_scorers_of_earlier_training_runs_join_their_project():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    project = old.get_model("annotator", "Project").objects.create(slug="p", name="P")
    scorer_model = old.get_model("annotator", "Scorer")
    trained = scorer_model.objects.create(name="p-run", adapter="qwen-prm", model="/m/p/run")
    shared = scorer_model.objects.create(name="arith", adapter="arithmetic-check")
    old.get_model("annotator", "TrainingRun").objects.create(
        project=project, name="run", kind="qwen-prm", base_model="b", scorer=trained
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("annotator", "Scorer")
    assert new.objects.get(pk=trained.pk).project_id == project.pk
    assert new.objects.get(pk=shared.pk).project_id is None

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
