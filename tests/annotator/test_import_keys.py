"""The keys of imported traces and problems hold without foreign-key constraints in the
database (models.Trace; issue 24): the importer refuses a project that is gone, and
holds the project row and every existing problem it names against deletion until it
commits, as the constraints' checks did."""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import connection

from annotator import importing
from annotator.importing import import_file, write_traces
from annotator.models import Annotation, Problem, Project, Step, Trace
from scoring.formats import ParsedTrace
from tests.factories import PROCESSBENCH_GSM8K


def everything() -> tuple[int, int, int, int]:
    return (
        Problem.objects.count(),
        Trace.objects.count(),
        Step.objects.count(),
        Annotation.objects.count(),
    )


def test_an_import_into_a_deleted_project_fails_and_leaves_nothing(db):
    gone = Project.objects.create(slug="gone", name="gone")
    Project.objects.filter(pk=gone.pk).delete()
    with pytest.raises(Project.DoesNotExist):
        import_file(gone, PROCESSBENCH_GSM8K)
    with pytest.raises(Project.DoesNotExist):
        write_traces(
            gone,
            [ParsedTrace(problem="1+1?", steps=["2"], external_id="a")],
            source="rollouts",
            fmt="rollouts",
        )
    assert everything() == (0, 0, 0, 0)


def locked(sql: str, params: list) -> bool:
    """Whether another connection finds the rows ``sql`` selects locked against deletion."""
    with psycopg.connect(**connection.get_connection_params()) as other:
        try:
            other.execute(sql + " FOR UPDATE NOWAIT", params).fetchall()
        except psycopg.errors.LockNotAvailable:
            return True
    return False


def two_files(tmp_path) -> tuple:
    """A file of 50 ProcessBench records, and a second whose traces are new but whose
    problems are the first's."""
    records = json.loads(PROCESSBENCH_GSM8K.read_text())
    first = tmp_path / "first.json"
    first.write_text(json.dumps(records[:50]))
    second = tmp_path / "second.json"
    second.write_text(json.dumps([{**r, "id": r["id"] + "-again"} for r in records[:50]]))
    return first, second


@pytest.mark.django_db(transaction=True)
def test_an_import_holds_the_problems_it_names_and_its_project_until_it_commits(
    tmp_path, monkeypatch
):
    project = Project.objects.create(slug="held", name="held")
    first, second = two_files(tmp_path)
    import_file(project, first)
    named = list(Problem.objects.filter(project=project).values_list("id", flat=True))
    held = []

    def progress(done: int, total: int | None) -> None:
        held.append(locked("SELECT 1 FROM annotator_problem WHERE id = ANY(%s)", [named]))

    finish = importing._Writer.finish

    def finish_then_look(writer) -> None:
        finish(writer)
        held.append(locked("SELECT 1 FROM annotator_project WHERE id = %s", [project.pk]))

    monkeypatch.setattr(importing._Writer, "finish", finish_then_look)
    summary = import_file(project, second, progress=progress)
    assert summary.traces == 50 and summary.problems == 0
    assert held == [True, True]  # the problems while it wrote, the project at the end
    assert not locked("SELECT 1 FROM annotator_project WHERE id = %s", [project.pk])
    # Every stored trace names a stored problem of its own project.
    assert not Trace.objects.exclude(problem__project_id=project.pk).exists()
    assert Trace.objects.filter(project=project).count() == 100


@pytest.mark.django_db(transaction=True)
def test_a_project_deleted_while_an_import_runs_fails_it_and_it_leaves_nothing(tmp_path):
    project = Project.objects.create(slug="deleted", name="deleted")
    first, second = two_files(tmp_path)
    import_file(project, first)
    before = everything()

    def delete_elsewhere(done: int, total: int | None) -> None:
        with psycopg.connect(**connection.get_connection_params()) as other:
            other.execute("DELETE FROM annotator_project WHERE id = %s", [project.pk])

    with pytest.raises(Project.DoesNotExist):
        import_file(project, second, progress=delete_elsewhere)
    assert everything() == before
    assert not Trace.objects.filter(external_id__endswith="-again").exists()
