"""One scoring run on several workers: three worker processes, each with its own var
directory (no shared files with this process), score the 400 ProcessBench GSM8K
traces with the tiny Qwen-PRM as one run split into shards; a worker SIGKILLed in the
middle of a shard leaves it to the other two, with nothing lost or doubled."""

from __future__ import annotations

import pytest

from annotator import runs
from annotator.importing import import_file
from annotator.models import JobStatus, Scorer, ScoringRun, Shard, Step, StepScore, TraceScore
from tests.factories import PROCESSBENCH_GSM8K, cli_scores
from tests.jobs.test_scoring_job import finished, stored
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

CHUNK = 10  # traces a chunk: four commits per shard, so a kill can land inside one
SHARD = 40  # traces a shard: ten shards over the 400 traces


@pytest.fixture
def scorer(project, tiny_qwen_prm) -> Scorer:
    import_file(project, PROCESSBENCH_GSM8K)
    return Scorer.objects.create(
        name="tiny-qwen", adapter="qwen-prm", model=str(tiny_qwen_prm), options={"device": "cpu"}
    )


@pytest.fixture
def start_workers(workers, tmp_path):
    """``start_workers(*names)``: a worker per name, each with its own ``STEPWISE_VAR_DIR``."""

    def start(*names: str):
        return [
            workers(
                name,
                STEPWISE_SCORING_CHUNK_TRACES=str(CHUNK),
                STEPWISE_VAR_DIR=str(tmp_path / name),
            )
            for name in names
        ]

    return start


def shards_by_worker(run: ScoringRun, started) -> dict[str, int]:
    """Done shards per started worker (a shard names its worker's pool process)."""
    counts = {}
    for worker in started:
        pids = {str(pid) for pid in worker.pool_children()}
        counts[worker.name] = sum(
            1
            for name in Shard.objects.filter(run_id=run.pk, status=JobStatus.DONE).values_list(
                "worker", flat=True
            )
            if name.rsplit(" pid ", 1)[1] in pids
        )
    return counts


def assert_each_trace_once(run: ScoringRun) -> dict[str, list[float]]:
    scores = stored(run)  # asserts every step stored once, in order
    assert len(scores) == 400
    assert TraceScore.objects.filter(run=run).count() == 400
    assert StepScore.objects.filter(run=run).count() == Step.objects.count()
    return scores


def test_three_workers_score_one_run_together_as_one_worker_does(
    start_workers, scorer, project, users
):
    one = start_workers("one")
    alone = runs.start_run(project, scorer, users["owner"], name="alone", shard_traces=0)
    reference = wait_for(lambda: finished(alone.pk), timeout=300)
    assert reference.status == JobStatus.DONE, reference.error
    expected = assert_each_trace_once(reference)

    started = one + start_workers("two", "three")
    run = runs.start_run(project, scorer, users["owner"], name="together", shard_traces=SHARD)
    assert Shard.objects.filter(run_id=run.pk).count() == 400 // SHARD

    done = wait_for(lambda: finished(run.pk), timeout=300)

    assert done.status == JobStatus.DONE, done.error
    got = assert_each_trace_once(done)
    assert got.keys() == expected.keys()
    worst = max(abs(a - b) for k in got for a, b in zip(got[k], expected[k], strict=True))
    assert worst < 1e-6, worst
    did = shards_by_worker(done, started)
    assert all(count >= 1 for count in did.values()), did
    assert sum(did.values()) == 400 // SHARD
    assert done.progress_done == done.progress_total == 400
    assert done.summary["traces"] == 400 and done.summary["shards"] == 400 // SHARD


def test_a_worker_killed_mid_shard_leaves_it_to_the_others(
    start_workers, scorer, project, users, tiny_qwen_prm, tmp_path
):
    expected = cli_scores(tiny_qwen_prm, PROCESSBENCH_GSM8K, tmp_path / "cli.jsonl")
    victim, *others = start_workers("victim", "two", "three")
    run = runs.start_run(project, scorer, users["owner"], shard_traces=SHARD)
    victim_pids = {str(pid) for pid in victim.pool_children()}

    def victim_mid_shard() -> Shard | None:
        for shard in Shard.objects.filter(run_id=run.pk, status=JobStatus.RUNNING):
            stored_here = TraceScore.objects.filter(
                run=run, trace_id__gte=shard.first_trace_id, trace_id__lte=shard.last_trace_id
            ).count()
            if shard.worker.rsplit(" pid ", 1)[1] in victim_pids and 0 < stored_here < SHARD:
                return shard
        return None

    shard = wait_for(victim_mid_shard, timeout=300, interval=0.05)
    victim.kill()
    at_kill = TraceScore.objects.filter(
        run=run, trace_id__gte=shard.first_trace_id, trace_id__lte=shard.last_trace_id
    ).count()
    assert 0 < at_kill < SHARD

    done = wait_for(lambda: finished(run.pk), timeout=300)

    assert done.status == JobStatus.DONE, done.error
    got = assert_each_trace_once(done)
    assert got.keys() == expected.keys()
    worst = max(abs(a - b) for k in got for a, b in zip(got[k], expected[k], strict=True))
    assert worst < 1e-5, worst
    retaken = Shard.objects.get(pk=shard.pk)
    assert retaken.status == JobStatus.DONE
    assert retaken.attempts == 2  # the victim's claim, then a survivor's
    assert retaken.worker.rsplit(" pid ", 1)[1] not in victim_pids
    assert set(Shard.objects.filter(run_id=run.pk).values_list("status", flat=True)) == {"done"}
    assert done.progress_done == 400
