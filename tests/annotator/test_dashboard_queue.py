"""Model-driven queue orders: convincing wrong answers, runs that disagree, and a run
that disagrees with the labels come first; the rest keep import order."""

from __future__ import annotations

import io
import json

import pytest

from annotator import queue, runs
from annotator.importing import import_file
from annotator.models import Annotation, AnnotationKind, QueueOrder, Trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def traces(project, tmp_path):
    """Six three-step traces; t1, t3 and t5 have a wrong final answer."""
    path = tmp_path / "traces.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": f"t{i}",
                    "problem": f"Problem {i}",
                    "steps": ["a", "b", "c"],
                    "final_answer": str(i),
                    "final_answer_correct": i % 2 == 0,
                }
            )
            for i in range(6)
        )
        + "\n"
    )
    import_file(project, path, "jsonl")
    return list(Trace.objects.filter(project=project).order_by("id"))


def _run(project, user, name: str, scores: dict[str, list[float]]):
    body = "".join(json.dumps({"id": k, "scores": v}) + "\n" for k, v in scores.items())
    return runs.import_scores(project, io.BytesIO(body.encode()), "s.jsonl", name=name, user=user)


def _order(project) -> list[str]:
    queue.ensure_ranked(project)
    return list(
        Trace.objects.filter(project=project)
        .order_by("queue_rank", "id")
        .values_list("external_id", flat=True)
    )


def test_convincing_wrong_answers_come_first_highest_score_first(project, users, traces):
    run = _run(
        project,
        users["owner"],
        "prm",
        {
            "t0": [0.99, 0.99, 0.99],  # right answer: not picked however high
            "t1": [0.9, 0.4, 0.8],  # wrong, lowest step 0.4
            "t2": [0.1, 0.1, 0.1],
            "t3": [0.9, 0.95, 0.7],  # wrong, lowest step 0.7: the most convincing
            "t5": [0.2, 0.2, 0.2],  # wrong, unconvincing
        },
    )
    project.queue_order = QueueOrder.CONVINCING_WRONG
    project.queue_run = run
    project.save()
    assert _order(project) == ["t3", "t1", "t5", "t0", "t2", "t4"]
    served = queue.claim_next(project, users["annotator"])
    assert served.trace.external_id == "t3"


def test_runs_disagree_puts_split_predictions_first(project, users, traces):
    a = {"t0": [0.9, 0.9, 0.9], "t1": [0.9, 0.1, 0.9], "t2": [0.9, 0.9, 0.2]}
    b = {"t0": [0.9, 0.9, 0.9], "t1": [0.9, 0.2, 0.9], "t2": [0.1, 0.9, 0.9]}
    for name, scores in (("a", a), ("b", b)):
        _run(project, users["owner"], name, scores)
    project.queue_order = QueueOrder.RUNS_DISAGREE
    project.save()
    # t2: predictions 2 vs 0 (two distinct); t1 and t0 agree, t1 with the wider spread.
    assert _order(project)[:3] == ["t2", "t1", "t0"]


def test_run_vs_humans_serves_disputed_labels_first_and_picking_a_run_reranks(
    project, users, traces
):
    scores = {f"t{i}": [0.9, 0.9, 0.9] for i in range(6)}  # predicts "all correct"
    run = _run(project, users["owner"], "prm", scores)
    for trace, label in ((traces[4], 1), (traces[2], -1)):
        Annotation.objects.create(
            trace=trace,
            annotator=users["reviewer"],
            kind=AnnotationKind.LABEL,
            first_error_step=label,
        )
    project.queue_order = QueueOrder.RUN_VS_HUMANS
    project.save()
    assert _order(project)[0] == "t0"  # no queue run yet: nothing to compare
    project.queue_run = run
    project.save()
    assert _order(project)[0] == "t4"


def test_the_settings_form_offers_only_the_projects_own_runs(project, users, traces, client_for):
    from django.urls import reverse

    from annotator.models import Project, ScoringRun

    own = _run(project, users["owner"], "own-prm", {"t1": [0.9, 0.4, 0.8]})
    other = Project.objects.create(slug="other", name="Other")
    foreign = ScoringRun.objects.create(project=other, name="foreign-prm", status="done")
    client = client_for(users["owner"])
    url = reverse("project-settings", args=[project.slug])
    page = client.get(url).content.decode()
    assert "own-prm" in page and "foreign-prm" not in page
    data = {
        "name": project.name,
        "annotators_per_trace": 1,
        "label_scheme": project.label_scheme,
        "queue_order": QueueOrder.CONVINCING_WRONG,
        "queue_seed": 0,
        "lock_minutes": 30,
        "gold_rate": 0,
        "screening_questions": 0,
        "screening_accuracy": 0.8,
    }
    response = client.post(url, data | {"queue_run": foreign.pk})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    project.refresh_from_db()
    assert project.queue_run is None
    assert client.post(url, data | {"queue_run": own.pk}).status_code == 302
    project.refresh_from_db()
    assert project.queue_run == own
    assert _order(project)[0] == "t1"
