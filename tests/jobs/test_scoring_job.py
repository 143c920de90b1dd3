"""Scoring runs on a real worker process: the tiny Qwen-PRM over the 400 ProcessBench
GSM8K traces matches ``python -m scoring score``; a SIGKILLed worker's run is finished
by another with nothing lost or doubled; cancel stops within a chunk; retry resumes."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotator import runs
from annotator.importing import import_file
from annotator.models import JobStatus, Scorer, ScoringRun, Step, StepScore, Trace, TraceScore
from tests.factories import PROCESSBENCH_GSM8K, cli_scores
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

CHUNK = 20  # traces a chunk on the test workers: 20 commits over the 400 traces
WORKER_ENV = {"STEPWISE_SCORING_CHUNK_TRACES": str(CHUNK)}


@pytest.fixture(scope="module")
def expected(tiny_qwen_prm, tmp_path_factory) -> dict[str, list[float]]:
    """The uninterrupted reference: the CLI over the same file and model."""
    return cli_scores(tiny_qwen_prm, PROCESSBENCH_GSM8K, tmp_path_factory.mktemp("cli") / "s.jsonl")


@pytest.fixture
def gsm8k_run(project, users, tiny_qwen_prm):
    import_file(project, PROCESSBENCH_GSM8K)
    scorer = Scorer.objects.create(
        name="tiny-qwen", adapter="qwen-prm", model=str(tiny_qwen_prm), options={"device": "cpu"}
    )
    return lambda: runs.start_run(project, scorer, users["owner"])


def run_of(run_id: int) -> ScoringRun:
    return ScoringRun.objects.get(pk=run_id)


def finished(run_id: int) -> ScoringRun | None:
    run = run_of(run_id)
    return run if run.is_finished else None


def stored(run: ScoringRun) -> dict[str, list[float]]:
    ids = dict(Trace.objects.values_list("id", "external_id"))
    found: dict[str, list[float]] = {}
    for trace_id, index, score in (
        StepScore.objects.filter(run=run)
        .order_by("trace_id", "step_index")
        .values_list("trace_id", "step_index", "score")
    ):
        scores = found.setdefault(ids[trace_id], [])
        assert index == len(scores), "a step stored twice or skipped"
        scores.append(score)
    return found


def assert_matches(run: ScoringRun, expected: dict[str, list[float]]) -> None:
    got = stored(run)
    assert got.keys() == expected.keys()
    worst = max(abs(a - b) for k in got for a, b in zip(got[k], expected[k], strict=True))
    assert worst < 1e-5, worst
    assert StepScore.objects.filter(run=run).count() == Step.objects.count()
    assert TraceScore.objects.filter(run=run).count() == 400


def test_a_run_on_the_worker_matches_the_cli(workers, gsm8k_run, expected, client_for, users):
    assert len(expected) == 400
    workers("scorer", **WORKER_ENV)
    run = gsm8k_run()
    assert run.queue == "default"  # device=cpu

    done = wait_for(lambda: finished(run.pk), timeout=300)

    assert done.status == JobStatus.DONE, done.error
    assert_matches(done, expected)
    assert done.progress_done == done.progress_total == 400
    assert done.tokens == sum(
        TraceScore.objects.filter(run=done).values_list("n_tokens", flat=True)
    )
    assert done.tokens > 0 and done.tokens_per_second > 0


def test_a_killed_worker_s_run_is_finished_by_another(
    workers, gsm8k_run, expected, client_for, users
):
    first = workers("first", **WORKER_ENV)
    run = gsm8k_run()
    wait_for(lambda: run_of(run.pk).progress_done >= 3 * CHUNK, timeout=300)
    first.kill()
    stored_at_kill = TraceScore.objects.filter(run=run).count()
    assert 0 < stored_at_kill < 400

    workers("second", **WORKER_ENV)
    done = wait_for(lambda: finished(run.pk), timeout=300)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert done.summary["resumed_at"] >= stored_at_kill  # it skipped what was stored
    assert done.progress_done == 400
    assert_matches(done, expected)


def test_cancel_stops_within_a_chunk_and_retry_resumes(
    workers, gsm8k_run, expected, client_for, users, project
):
    workers("only", **WORKER_ENV)
    run = gsm8k_run()
    wait_for(lambda: run_of(run.pk).progress_done >= CHUNK, timeout=300)
    response = client_for(users["owner"]).post(
        reverse("api-run-cancel", args=[project.slug, run.pk])
    )
    assert response.status_code == 200
    at_request = TraceScore.objects.filter(run=run).count()

    cancelled = wait_for(lambda: finished(run.pk), timeout=120)

    assert cancelled.status == JobStatus.CANCELLED
    stored_when_cancelled = TraceScore.objects.filter(run=run).count()
    assert stored_when_cancelled <= at_request + CHUNK  # the chunk in flight, no more
    assert stored_when_cancelled < 400

    response = client_for(users["owner"]).post(
        reverse("api-run-retry", args=[project.slug, run.pk])
    )
    assert response.status_code == 202, response.content
    done = wait_for(lambda: finished(run.pk), timeout=300)
    assert done.status == JobStatus.DONE, done.error
    assert done.summary["resumed_at"] == stored_when_cancelled
    assert_matches(done, expected)
    assert json.loads(json.dumps(done.summary))["traces"] == 400
