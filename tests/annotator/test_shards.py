"""Runs split into shards, worked in this process on PostgreSQL: the plan covers the
selection once, a claim passes over a shard another claimer holds, shards store what
one job stores, cancel and retry act on the whole run, the sweeper takes up a dead
worker's shard, the run's page and API show the shards; and the same run on SQLite.
(Several real worker processes, with SIGKILL: tests/jobs/test_shards.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from annotator import jobs, runs, shards
from annotator.importing import import_file
from annotator.models import JobStatus, Scorer, ScoringRun, Shard, Trace, TraceScore
from tests.annotator.test_runs import stored
from tests.factories import PROCESSBENCH_GSM8K, sqlite_env

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


@pytest.fixture
def arithmetic(users):
    return Scorer.objects.create(name="arith", adapter="arithmetic-check")


def work_one(run: ScoringRun) -> str | None:
    """What a worker does with one message of the run."""
    return shards.execute(ScoringRun, run.pk, runs.run_scoring_job, finish=runs.finish_run)


def work_all(run: ScoringRun) -> ScoringRun:
    while work_one(run) is not None:
        pass
    run.refresh_from_db()
    return run


def test_the_shards_cover_the_selection_once(gsm8k, arithmetic, users):
    ids = sorted(Trace.objects.values_list("id", flat=True))[::3]  # 134 traces, with gaps
    run = runs.create_run(
        gsm8k, arithmetic, users["owner"], selection={"ids": ids}, shard_traces=50
    )

    planned = list(Shard.objects.filter(run_id=run.pk).order_by("index"))
    assert [s.traces for s in planned] == [50, 50, 34]
    covered = [
        list(
            jobs.selected_traces(gsm8k, run.selection)
            .filter(pk__gte=s.first_trace_id, pk__lte=s.last_trace_id)
            .order_by("id")
            .values_list("id", flat=True)
        )
        for s in planned
    ]
    assert [len(c) for c in covered] == [50, 50, 34]
    assert sum(covered, []) == ids
    run.refresh_from_db()
    assert run.progress_total == len(ids)
    assert not Shard.objects.filter(
        run_id=runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=0).pk
    ).exists()
    with pytest.raises(jobs.RunError):
        runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=-1)


def test_a_claim_passes_over_the_shard_another_claimer_holds(gsm8k, arithmetic, users):
    run = runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=100)
    first = Shard.objects.get(run_id=run.pk, index=0)
    locked, release = threading.Event(), threading.Event()

    def hold_first_shard() -> None:
        with transaction.atomic():
            Shard.objects.select_for_update().get(pk=first.pk)
            locked.set()
            release.wait(30)
        connection.close()

    holder = threading.Thread(target=hold_first_shard)
    holder.start()
    try:
        assert locked.wait(30)
        taken = shards.claim(ScoringRun, run.pk, "host-b pid 2")  # does not wait on the lock
    finally:
        release.set()
        holder.join()

    assert taken.index == 1 and taken.attempts == 1
    assert shards.claim(ScoringRun, run.pk, "host-c pid 3").index == 0
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.started_at is not None


def test_shards_store_what_one_job_stores(gsm8k, arithmetic, users):
    whole = runs.create_run(gsm8k, arithmetic, users["owner"], name="whole", shard_traces=0)
    assert jobs.execute(ScoringRun, whole.pk, runs.run_scoring_job) == JobStatus.DONE
    run = runs.create_run(gsm8k, arithmetic, users["owner"], name="sharded", shard_traces=64)

    assert work_one(run) == JobStatus.DONE
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.progress_done == 64
    done = work_all(run)

    assert done.status == JobStatus.DONE, done.error
    assert stored(done) == stored(whole)
    assert done.progress_done == done.progress_total == 400
    assert done.summary["traces"] == 400 and done.summary["shards"] == 7
    assert work_one(done) is None  # a late message finds nothing to take


def test_cancel_and_retry_act_on_the_whole_run(gsm8k, arithmetic, users, client_for):
    run = runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=100)
    work_one(run)
    in_flight = shards.claim(ScoringRun, run.pk, "host-b pid 2")
    owner = client_for(users["owner"])

    cancel = owner.post(reverse("api-run-cancel", args=[run.project.slug, run.pk]))

    assert cancel.status_code == 200
    assert cancel.json()["status"] == "running"  # a shard is still in flight
    assert cancel.json()["cancel_requested"]
    assert shards.claim(ScoringRun, run.pk, "host-c pid 3") is None
    # The worker of the shard in flight stops at its next check, puts it back, and
    # being the last to stop, cancels the run.
    context = shards.ShardContext(run, in_flight, shards._ShardHeartbeat(ScoringRun, in_flight))
    with pytest.raises(jobs.JobCancelled):
        context.check()
    shards._put_back(ScoringRun, in_flight, 0, 0)
    assert shards.settle_cancel(ScoringRun, run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED and run.progress_done == 100

    retry = owner.post(reverse("api-run-retry", args=[run.project.slug, run.pk]))

    assert retry.status_code == 202, retry.content
    statuses = dict(Shard.objects.filter(run_id=run.pk).values_list("index", "status"))
    assert statuses == {0: "done", 1: "queued", 2: "queued", 3: "queued"}
    assert set(
        Shard.objects.filter(run_id=run.pk, index__gt=0).values_list("attempts", flat=True)
    ) == {0}
    done = work_all(run)
    assert done.status == JobStatus.DONE
    assert TraceScore.objects.filter(run=done).count() == 400


def test_a_cancel_with_no_shard_in_flight_cancels_at_once(gsm8k, arithmetic, users):
    run = runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=100)
    work_one(run)

    jobs.cancel(run)

    assert run.status == JobStatus.CANCELLED
    assert work_one(run) is None


def test_the_sweeper_takes_up_a_dead_worker_s_shard(gsm8k, arithmetic, users, settings):
    run = runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=200)
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 1)

    for attempt in range(1, run.max_attempts + 1):
        dead = shards.claim(ScoringRun, run.pk, f"host-{attempt} pid 1")
        assert (dead.index, dead.attempts) == (0, attempt)
        Shard.objects.filter(pk=dead.pk).update(heartbeat_at=long_ago)
        ScoringRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
        counts = jobs.sweep()
        run.refresh_from_db()
        if attempt < run.max_attempts:
            assert counts["requeued"] == 1 and counts["failed"] == 0
            assert Shard.objects.get(pk=dead.pk).status == JobStatus.QUEUED
            assert run.status == JobStatus.RUNNING  # the run itself is not taken up again

    assert counts["failed"] == 1
    assert run.status == JobStatus.FAILED
    assert run.error.startswith("Shard 1 (traces ")
    assert f"The last worker was host-{run.max_attempts} pid 1" in run.error
    assert shards.claim(ScoringRun, run.pk, "host-z pid 9") is None


def test_an_idle_run_s_messages_are_sent_again_backing_off(gsm8k, arithmetic, users, settings):
    from annotator.celery import app

    broker = app.connection_for_write().default_channel.client
    run = runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=100)
    untouched = broker.llen("default")
    jobs.enqueue(run)
    assert broker.llen("default") - untouched == 4  # a message per shard
    stale = settings.JOB_STALE_SECONDS

    def idle(since: float, sent: float) -> dict[str, int]:
        now = timezone.now()
        ScoringRun.objects.filter(pk=run.pk).update(
            heartbeat_at=now - timedelta(seconds=since), queued_at=now - timedelta(seconds=sent)
        )
        before = broker.llen("default")
        counts = jobs.sweep()
        return {"resent": counts["resent"], "messages": broker.llen("default") - before}

    assert idle(since=stale / 2, sent=2 * stale) == {"resent": 0, "messages": 0}  # touched
    assert idle(since=2 * stale, sent=2 * stale) == {"resent": 1, "messages": 4}
    assert idle(since=2 * stale, sent=stale / 2) == {"resent": 0, "messages": 0}  # just sent
    assert idle(since=10 * stale, sent=4 * stale) == {"resent": 0, "messages": 0}  # backing off
    assert idle(since=10 * stale, sent=6 * stale) == {"resent": 1, "messages": 4}
    for _ in range(broker.llen("default") - untouched):  # this test's, the newest
        broker.lpop("default")


def test_the_run_page_and_the_api_show_the_shards(gsm8k, arithmetic, users, client_for):
    run = runs.create_run(gsm8k, arithmetic, users["owner"], shard_traces=100)
    work_one(run)
    in_flight = shards.claim(ScoringRun, run.pk, "gpu-box-7 pid 4242")
    Shard.objects.filter(pk=in_flight.pk).update(done=30)
    owner = client_for(users["owner"])

    page = owner.get(reverse("run", args=[run.project.slug, run.pk])).content.decode()
    api = owner.get(reverse("api-run", args=[run.project.slug, run.pk])).json()

    assert '<span id="shards-done">1 of 4</span> shards done' in page
    assert '<span id="shards-in-flight">1</span> in flight' in page
    assert '<span id="shards-left">2</span> left' in page
    assert "shard 2 on <code>gpu-box-7</code>" in page and "30 of 100 traces" in page
    assert api["shards"]["done"] == 1 and api["shards"]["left"] == 2
    assert api["shards"]["in_flight"] == [
        {"index": 2, "host": "gpu-box-7", "worker": "gpu-box-7 pid 4242", "done": 30, "traces": 100}
    ]
    assert len(api["shards"]["hosts"]) == 1


SQLITE_RUN = """
import django
django.setup()
from django.conf import settings
assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
from annotator import jobs, runs, shards
from annotator.importing import import_file
from annotator.models import Project, Scorer, ScoringRun, StepScore
project = Project.objects.create(slug="p", name="p")
import_file(project, __import__("pathlib").Path(%r))
scorer = Scorer.objects.create(name="arith", adapter="arithmetic-check")
whole = runs.create_run(project, scorer, None, name="whole", shard_traces=0)
assert jobs.execute(ScoringRun, whole.pk, runs.run_scoring_job) == "done"
run = runs.create_run(project, scorer, None, name="sharded", shard_traces=64)
while shards.execute(ScoringRun, run.pk, runs.run_scoring_job, finish=runs.finish_run):
    pass
run.refresh_from_db()
assert run.status == "done", run.error
rows = lambda r: list(StepScore.objects.filter(run=r).order_by("trace_id", "step_index")
                      .values_list("trace_id", "step_index", "score"))
assert rows(run) == rows(whole) and len(rows(run)) > 400
print("shards:", run.summary["shards"])
"""


def test_a_sharded_run_on_sqlite(sqlite_var):
    env = sqlite_env(sqlite_var)
    check = subprocess.run(
        [sys.executable, "-c", SQLITE_RUN % str(PROCESSBENCH_GSM8K)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert "shards: 7" in check.stdout
