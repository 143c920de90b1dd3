"""Monte-Carlo runs on a real worker process against the scripted OpenAI-compatible
server process: hard labels find the planted first errors in both modes, binary search
asks for fewer rollouts, and a SIGKILLed worker's run is finished by another with every
rollout stored once."""

from __future__ import annotations

import json

import pytest

from annotator.importing import import_file
from annotator.models import JobStatus, MCRollout, MonteCarloRun, Trace, TraceMC
from annotator.montecarlo import start_mc_run
from tests.scoring import mc_server
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server():
    # A per-request delay, so that a run lasts long enough to kill a worker in it.
    process, url = mc_server.spawn(delay=0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def planted_traces(project, tmp_path, count: int) -> dict[int, int]:
    records = mc_server.planted_records(count)
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps({**r, "label": None}) + "\n" for r in records))
    import_file(project, path, "jsonl")
    ids = dict(Trace.objects.filter(project=project).values_list("external_id", "pk"))
    return {ids[r["id"]]: r["label"] for r in records}


def finished(run_id: int) -> MonteCarloRun | None:
    run = MonteCarloRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def start(project, users, server, mode: str, name: str) -> MonteCarloRun:
    return start_mc_run(
        project,
        users["owner"],
        completer=f"openai:{server}",
        model="m",
        mode=mode,
        n=2,
        keep_rollouts=True,
        name=name,
        options={"temperature": 1.0, "seed": 0, "max_in_flight": 8},
    )


def test_both_modes_find_the_planted_first_errors(
    workers, project, users, server, tmp_path
) -> None:
    planted = planted_traces(project, tmp_path, 12)
    workers("mc")
    rollouts = {}
    for mode in ("exhaustive", "binary"):
        run = start(project, users, server, mode, f"mc-{mode}")
        assert run.queue == "default"  # a server completer needs no GPU
        done = wait_for(lambda run=run: finished(run.pk), timeout=120)
        assert done.status == JobStatus.DONE, done.error
        found = dict(TraceMC.objects.filter(run=done).values_list("trace_id", "first_error"))
        assert found == planted, mode
        assert done.rollouts == MCRollout.objects.filter(run=done).count() > 0
        assert done.tokens > 0 and done.progress_done == 12
        rollouts[mode] = done.rollouts
    print(f"\nrollouts over 12 traces (n=2): {rollouts}")
    assert rollouts["binary"] < rollouts["exhaustive"]


def test_a_killed_worker_s_run_is_finished_with_no_duplicate_rollouts(
    workers, project, users, server, tmp_path
) -> None:
    planted = planted_traces(project, tmp_path, 30)
    first = workers("first")
    run = start(project, users, server, "exhaustive", "mc-killed")
    wait_for(lambda: TraceMC.objects.filter(run=run).count() >= 5, timeout=120)
    first.kill()
    stored_at_kill = TraceMC.objects.filter(run=run).count()
    assert stored_at_kill < 30

    workers("second")
    done = wait_for(lambda: finished(run.pk), timeout=120)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert done.summary["resumed_at"] >= stored_at_kill
    found = dict(TraceMC.objects.filter(run=done).values_list("trace_id", "first_error"))
    assert found == planted
    steps = dict(Trace.objects.filter(pk__in=planted).values_list("pk", "num_steps"))
    expected = sum(2 * (n + 1) for n in steps.values())  # each prefix + the problem, n = 2
    assert MCRollout.objects.filter(run=done).count() == expected == done.rollouts
    for trace_id, n_steps in steps.items():
        per_step = MCRollout.objects.filter(run=done, trace_id=trace_id)
        assert sorted(per_step.values_list("step_index", "sample")) == [
            (s, k) for s in range(-1, n_steps) for k in range(2)
        ]
