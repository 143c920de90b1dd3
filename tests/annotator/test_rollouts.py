"""Rollouts logged by the reward service (``annotator.rollouts.log_rollouts``): each once,
however the batches overlap and however many callers send them at once, as traces with
the rewards in their metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from annotator.models import Problem, Project, Step, Trace
from annotator.rollouts import (
    BadRollout,
    UnknownProject,
    log_rollouts,
    normalised_step,
    repeated_steps,
)
from tests.factories import rollout_records
from tests.workers import ROOT, worker_env


def _stored(project: Project) -> list[str]:
    return list(
        Trace.objects.filter(project=project).order_by("id").values_list("external_id", flat=True)
    )


def test_it_writes_each_rollout_once_across_overlapping_batches(project):
    records = rollout_records(200)
    assert log_rollouts(project.slug, records[:120]) == 120
    assert log_rollouts(project.slug, records[80:]) == 80
    assert log_rollouts(project.slug, records) == 0  # the whole run retried
    assert log_rollouts(project.slug, records[10:12] + records[10:12]) == 0
    stored = _stored(project)
    assert sorted(stored) == sorted(r["key"] for r in records)
    assert Step.objects.filter(trace__project=project).count() == sum(
        len(r["steps"]) for r in records
    )
    # A trainer samples several responses per prompt: one problem each, found again by text.
    assert Problem.objects.filter(project=project).count() == 8


def test_a_repeat_within_one_batch_is_written_once(project):
    records = rollout_records(3)
    assert log_rollouts(project.slug, records + records[:2]) == 3
    assert len(_stored(project)) == 3


@pytest.fixture
def race(transactional_db):
    return Project.objects.create(slug="race", name="Race")


def test_two_callers_at_once_write_each_rollout_once(race):
    """Two threads, each with its own database connection, log a 200-rollout run in ten
    rounds of twenty new rollouts; in each round both send overlapping slices (fourteen
    each, eight in common) at the same moment, and at the end both send the whole run
    again (a trainer's retries)."""
    records = rollout_records(200)
    rounds = [records[k : k + 20] for k in range(0, 200, 20)]
    slices = [lambda r: r[:14], lambda r: r[6:]]
    barrier = threading.Barrier(len(slices))
    written = [0, 0]
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            for batch in [*(slices[i](r) for r in rounds), records]:
                barrier.wait(timeout=30)
                written[i] += log_rollouts(race.slug, batch)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(slices))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sum(written) == 200
    stored = _stored(race)
    assert len(stored) == 200 and set(stored) == {r["key"] for r in records}
    assert Step.objects.filter(trace__project=race).count() == sum(len(r["steps"]) for r in records)


def test_a_trace_holds_the_rollout_and_its_rewards(project):
    record = next(r for r in rollout_records(40) if r["success"] is True and r["key"] != "r0")
    log_rollouts(project.slug, [record])
    trace = Trace.objects.select_related("problem").get(project=project)
    assert trace.source == "reward-service:tiny"
    assert trace.source_format == "rollout"
    assert trace.external_id == record["key"]
    assert trace.problem.text == record["problem"]
    assert trace.problem.reference_answer == record["ground_truth"]
    assert trace.step_texts == record["steps"]
    assert trace.num_steps == len(record["steps"])
    assert trace.final_answer == record["ground_truth"]  # the boxed answer, which is right
    assert trace.final_answer_correct is True
    rollout = trace.metadata["rollout"]
    assert rollout["transform"] == record["transform"]
    assert rollout["transform_version"] == 1
    assert rollout["step_scores"] == record["step_scores"]
    assert rollout["step_rewards"] == pytest.approx(record["step_rewards"])
    assert rollout["return"] == pytest.approx(record["return"])
    assert rollout["prm_return"] == pytest.approx(record["return"] - 1.0)  # the success term
    assert rollout["success"] is True
    assert rollout["training_step"] == record["training_step"]
    assert rollout["protocol"] == "native"
    assert rollout["response_chars"] == len(record["response"])
    assert rollout["repeated_steps"] == 0


def test_a_wrong_answer_and_a_repeated_step_are_recorded(project):
    records = rollout_records(40)
    log_rollouts(project.slug, records)
    failed = next(r for r in records if r["success"] is False)
    trace = Trace.objects.get(project=project, external_id=failed["key"])
    assert trace.final_answer_correct is False
    assert trace.metadata["rollout"]["prm_return"] == pytest.approx(failed["return"])
    no_truth = Trace.objects.get(project=project, external_id="r0")  # 0 % 7: no ground truth
    assert no_truth.final_answer_correct is None
    assert no_truth.metadata["rollout"]["repeated_steps"] == 1  # 0 % 5: one step again


def test_an_unknown_project_is_a_clear_error(db):
    with pytest.raises(UnknownProject, match="'nowhere'"):
        log_rollouts("nowhere", rollout_records(1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": ""}, "key is empty"),
        ({"key": "k" * 201}, "key is longer than 200"),
        ({"steps": []}, "steps must be a non-empty list"),
        ({"step_scores": [0.5]}, "step_scores must be a list of"),
        ({"return": float("nan")}, "return must be a finite number"),
        ({"success": "yes"}, "success must be true, false or null"),
        ({"training_step": 1.5}, "training_step must be an integer"),
        ({"problem": None}, "problem must be a string"),
        ({"steps": ["a", "b\x00"]}, "steps holds a NUL byte"),
        ({"ground_truth": ["4"]}, "ground_truth must be a string"),
    ],
)
def test_a_bad_record_writes_nothing(project, change, message):
    records = rollout_records(5)
    records[3] = {**records[3], **change}
    with pytest.raises(BadRollout, match=message):
        log_rollouts(project.slug, records)
    assert not Trace.objects.filter(project=project).exists()


def test_a_source_too_long_for_the_column_writes_nothing(project):
    with pytest.raises(ValueError, match="at most 64 fit"):
        log_rollouts(project.slug, rollout_records(2, source="reward-service:" + "x" * 60))
    assert not Trace.objects.filter(project=project).exists()


def test_near_duplicate_steps_follow_the_documented_rule():
    assert normalised_step("Step 2:  So 2 + 3 = 5.") == normalised_step("step 7: so 2+3=5")
    assert normalised_step("3) x = 4!") == normalised_step("X = 4")
    assert normalised_step("2 + 3 = 5") != normalised_step("2 - 3 = 5")
    assert repeated_steps(["x = 2.", "So y = 4", "x = 2", "So y = 4.", "so y=4"]) == 3
    assert repeated_steps(["x = 2", "x = 3", "Step 3:", "Step 4:"]) == 0  # empty once numbered


def test_a_numeric_ground_truth_is_the_problems_answer_as_text(project):
    record = {**rollout_records(2)[1], "ground_truth": 1}
    assert log_rollouts(project.slug, [record]) == 1
    assert Problem.objects.get(project=project).reference_answer == "1"


KILLED_WRITER = """
import django
django.setup()
from annotator.rollouts import log_rollouts
from tests.factories import rollout_records
log_rollouts("killed", rollout_records(6000))
"""


def _trace_ids_drawn() -> int:
    """The trace id sequence's position: drawn ids show at once, committed or not."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence('annotator_trace', 'id')")
        (sequence,) = cursor.fetchone()
        cursor.execute(f"SELECT last_value FROM {sequence}")
        return cursor.fetchone()[0]


def test_a_writer_killed_mid_batch_leaves_nothing_and_the_retry_writes_each_once(
    transactional_db,
):
    """The service's log process is SIGKILLed while it writes a batch of 6,000 (three
    chunks): once it has drawn its first trace ids, it is killed. Nothing of the batch
    is stored, and the batch sent again is stored whole, each rollout once."""
    project = Project.objects.create(slug="killed", name="Killed")
    before = _trace_ids_drawn()
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER],
        cwd=ROOT,
        env=worker_env(DJANGO_SETTINGS_MODULE="annotator.settings"),
    )
    deadline = time.monotonic() + 120
    while _trace_ids_drawn() == before:
        assert writer.poll() is None, "the writer ended before it drew a trace id"
        assert time.monotonic() < deadline, "the writer never drew a trace id"
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert not Trace.objects.filter(project=project).exists()
    records = rollout_records(6000)
    assert log_rollouts(project.slug, records) == 6000
    assert len(set(_stored(project))) == len(_stored(project)) == 6000
    assert Step.objects.filter(trace__project=project).count() == sum(
        len(r["steps"]) for r in records
    )
