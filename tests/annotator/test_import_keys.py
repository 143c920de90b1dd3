"""An import, or a rollout log's write, into a project that is gone fails with the
project named and leaves nothing behind."""

from __future__ import annotations

import pytest

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
