"""An import ranks the traces it writes in the project's queue order, as a claim would,
so the first claim after a big import has no ranking to do while an annotator waits."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator import importing, queue, ranking
from annotator.importing import import_file
from annotator.models import Project, QueueOrder, Trace
from tests.factories import PROCESSBENCH_GSM8K


def ranks(project) -> dict[int, int | None]:
    return dict(Trace.objects.filter(project=project).values_list("id", "queue_rank"))


def ranked_from_scratch(project) -> dict[int, int | None]:
    """The ranks a claim computes when it ranks every trace of the project."""
    Project.objects.filter(pk=project.pk).update(queue_ranked_as="")
    project.refresh_from_db()
    ranking.ensure_ranked(project)
    return ranks(project)


def parts(tmp_path, *slices: slice):
    records = json.loads(PROCESSBENCH_GSM8K.read_text())
    for i, part in enumerate(slices):
        path = tmp_path / f"part{i}.json"
        path.write_text(json.dumps(records[part]))
        yield path


def claim_ranks_nothing(project, user) -> bool:
    project.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        assert queue.claim_next(project, user).trace is not None
    return not any(
        q["sql"].startswith("UPDATE") and "queue_rank" in q["sql"] for q in queries.captured_queries
    )


@pytest.mark.parametrize("order", list(QueueOrder))
def test_an_import_ranks_its_traces_as_a_claim_would(project, users, order, tmp_path):
    project.queue_order = order
    project.queue_seed = 7
    project.save()
    first, second = parts(tmp_path, slice(0, 200), slice(200, 400))
    import_file(project, first)  # the project's first traces
    assert claim_ranks_nothing(project, users["annotator"])
    import_file(project, second)  # more traces for a ranked project
    assert None not in ranks(project).values()
    assert claim_ranks_nothing(project, users["reviewer"])
    assert ranks(project) == ranked_from_scratch(project)


@pytest.mark.django_db(transaction=True)
def test_a_rerank_while_an_import_runs_leaves_its_traces_to_the_next_claim(
    project, users, tmp_path, monkeypatch
):
    """A claim re-ranks the project for a new order while the import is writing: the
    import's ranks, for the old order, are cleared, not kept as if current."""
    monkeypatch.setattr(importing, "CHUNK_RECORDS", 100)
    (path,) = parts(tmp_path, slice(0, 300))

    def reorder_elsewhere() -> None:
        other = Project.objects.get(pk=project.pk)
        other.queue_order, other.queue_seed = QueueOrder.RANDOM, 3
        other.save()
        ranking.ensure_ranked(other)
        connection.close()

    def progress(done: int, total: int | None) -> None:
        if done == 100:  # after the first chunk: another connection commits a re-rank
            thread = threading.Thread(target=reorder_elsewhere)
            thread.start()
            thread.join()

    import_file(project, path, progress=progress)
    assert set(ranks(project).values()) == {None}
    project.refresh_from_db()
    assert project.queue_ranked_as.startswith("random:3")
    queue.claim_next(project, users["annotator"])
    assert ranks(project) == ranked_from_scratch(project)


def test_a_project_claimed_while_empty_keeps_the_ranks_of_its_first_import(
    project, users, tmp_path
):
    assert queue.claim_next(project, users["annotator"]).trace is None  # ranks it, empty
    project.refresh_from_db()
    ranked_for_import_order = project.queue_ranked_as
    project.queue_order, project.queue_seed = QueueOrder.RANDOM, 5
    project.save()
    (path,) = parts(tmp_path, slice(0, 100))
    import_file(project, path)
    project.refresh_from_db()
    assert project.queue_ranked_as not in ("", ranked_for_import_order)
    assert claim_ranks_nothing(project, users["annotator"])
    assert ranks(project) == ranked_from_scratch(project)


def test_saving_the_settings_keeps_a_rerank_made_meanwhile(project, users, client_for, monkeypatch):
    """The settings form saves its own fields only: the queue's ranked-as mark read with
    the project at the start of the request is not written back over a re-rank."""
    from django.urls import reverse

    from annotator.views.projects import SettingsForm

    clean = SettingsForm.clean

    def rerank_meanwhile(form):
        Project.objects.filter(pk=project.pk).update(queue_ranked_as="random:9:")
        return clean(form)

    monkeypatch.setattr(SettingsForm, "clean", rerank_meanwhile)
    data = {
        "name": "Renamed",
        "annotators_per_trace": 1,
        "label_scheme": project.label_scheme,
        "queue_order": QueueOrder.RANDOM,
        "queue_seed": 9,
        "lock_minutes": 30,
        "gold_rate": 0,
        "screening_questions": 0,
        "screening_accuracy": 0.8,
    }
    url = reverse("project-settings", args=[project.slug])
    assert client_for(users["owner"]).post(url, data).status_code == 302
    project.refresh_from_db()
    assert (project.name, project.queue_ranked_as) == ("Renamed", "random:9:")
