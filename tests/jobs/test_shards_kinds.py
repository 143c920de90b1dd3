"""Sampling, verification, tree-search (grounded) and Monte-Carlo runs split into shards:
two worker processes, each with its own var directory, take the shards of one run
against the scripted completer servers on loopback; both do shards, every item is
stored once, and the results equal those of the same run worked as one job. A worker
SIGKILLed in the middle of a sampling, verification or grounded shard leaves it to
another, with nothing lost or doubled (a search goes on from its last saved round)."""

from __future__ import annotations

import pytest

from annotator import shards
from annotator.grounded import start_grounded_run
from annotator.grounded_paths import run_source
from annotator.models import (
    GroundedPath,
    GroundedRun,
    GroundedTree,
    JobStatus,
    MCRollout,
    MonteCarloRun,
    SampledSolution,
    SamplingRun,
    Shard,
    SolutionVerification,
    Trace,
    TraceMC,
    VerificationRun,
)
from annotator.montecarlo import start_mc_run
from annotator.sampling import start_sampling_run
from tests.factories import solved_runs
from tests.jobs.test_grounded_job import SEED, import_problems, uninterrupted
from tests.jobs.test_montecarlo_job import planted_traces
from tests.jobs.test_sampling_verification_job import SAMPLING, problems, verify
from tests.scoring import grounded_server, mc_server
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server():
    # A per-request delay, so that a shard lasts long enough for the other worker to
    # claim the next one, and to kill a worker in it.
    process, url = mc_server.spawn(delay=0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def two_workers(workers, tmp_path):
    """Two workers, each with its own ``STEPWISE_VAR_DIR``."""
    return [workers(name, STEPWISE_VAR_DIR=str(tmp_path / name)) for name in ("one", "two")]


def finished(model, run_id: int):
    run = model.objects.get(pk=run_id)
    return run if run.is_finished else None


def done_run(model, run_id: int):
    run = wait_for(lambda: finished(model, run_id), timeout=240)
    assert run.status == JobStatus.DONE, run.error
    return run


def shards_by_worker(run, started) -> dict[str, int]:
    """Done shards of ``run`` per started worker (a shard names its pool process)."""
    rows = Shard.objects.filter(run_id=run.pk, status=JobStatus.DONE)
    rows = rows.filter(content_type__model=type(run).__name__.lower())
    names = list(rows.values_list("worker", flat=True))
    counts = {}
    for worker in started:
        pids = {str(pid) for pid in worker.pool_children()}
        counts[worker.name] = sum(1 for name in names if name.rsplit(" pid ", 1)[1] in pids)
    return counts


def assert_both_did_shards(run, started, planned: int) -> None:
    did = shards_by_worker(run, started)
    assert all(count >= 1 for count in did.values()), did
    assert sum(did.values()) == planned
    assert run.summary["shards"] == planned


def sample(project, users, server, n: int, name: str, shard_traces: int, **options):
    return start_sampling_run(
        project,
        users["owner"],
        completer=f"openai:{server}",
        model="m",
        n=n,
        options={**SAMPLING, **options},
        name=name,
        shard_traces=shard_traces,
    )


def solutions(run: SamplingRun) -> dict[tuple[int, int], tuple]:
    """(problem, index): (answer, correct, steps, tokens) of each stored solution, each once."""
    rows = SampledSolution.objects.filter(run=run).select_related("trace")
    got = {
        (r.problem_id, r.index): (
            r.trace.final_answer,
            r.trace.final_answer_correct,
            tuple(r.trace.step_texts),
            r.tokens,
        )
        for r in rows
    }
    assert len(got) == rows.count() == Trace.objects.filter(source=run.source).count()
    return got


def test_two_workers_sample_one_run_together_as_one_job_does(
    two_workers, project, users, server
) -> None:
    sums = problems(project, 8)
    alone = sample(project, users, server, 2, "alone", shard_traces=0)
    expected = solutions(done_run(SamplingRun, alone.pk))
    assert len(expected) == 8 * 2

    run = sample(project, users, server, 2, "together", shard_traces=2, max_in_flight=1)
    assert Shard.objects.filter(run_id=run.pk, content_type__model="samplingrun").count() == 4
    done = done_run(SamplingRun, run.pk)

    assert solutions(done) == expected
    assert {p for p, _ in expected} == set(sums)
    assert_both_did_shards(done, two_workers, 4)
    assert done.progress_done == done.progress_total == 8
    assert done.summary["problems"] == 8 and done.solutions == 16


def verifications(run: VerificationRun) -> dict[tuple[int, int], tuple]:
    rows = SolutionVerification.objects.filter(run=run)
    got = {(r.solution_id, r.index): (r.text, r.verdict, r.p_yes, r.p_no, r.tokens) for r in rows}
    assert len(got) == rows.count()
    return got


def test_two_workers_verify_one_run_together_as_one_job_does(
    two_workers, project, users, server
) -> None:
    problems(project, 4)
    sampled = done_run(SamplingRun, sample(project, users, server, 3, "pool", shard_traces=0).pk)
    alone = verify(project, users, server, sampled, 2, "alone", shard_traces=0)
    expected = verifications(done_run(VerificationRun, alone.pk))
    assert len(expected) == 12 * 2

    run = verify(
        project,
        users,
        server,
        sampled,
        2,
        "together",
        shard_traces=3,
        options={"max_in_flight": 1},
    )
    done = done_run(VerificationRun, run.pk)

    assert verifications(done) == expected
    assert_both_did_shards(done, two_workers, 4)
    assert done.progress_done == done.progress_total == 12
    assert done.summary["solutions"] == 12 and done.verifications == 24


@pytest.fixture(scope="module")
def search_server():
    process, url = grounded_server.spawn(delay=0.02)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_two_workers_search_one_run_together_as_one_job_does(
    two_workers, project, users, search_server, tmp_path
) -> None:
    searched = import_problems(project, tmp_path)

    def start(name: str, shard_traces: int) -> GroundedRun:
        return start_grounded_run(
            project,
            users["owner"],
            generator=f"openai:{search_server}",
            model="generator",
            seed=SEED,
            name=name,
            shard_traces=shard_traces,
        )

    alone = done_run(GroundedRun, start("alone", 0).pk)
    done = done_run(GroundedRun, start("together", 1).pk)

    trees = {t.problem_id: t.state for t in GroundedTree.objects.filter(run=done, done=True)}
    assert trees == {t.problem_id: t.state for t in GroundedTree.objects.filter(run=alone)}
    assert sorted(trees) == [p.pk for p in searched]
    assert_both_did_shards(done, two_workers, 3)
    for run in (alone, done):  # the paths came in once, the same
        assert GroundedPath.objects.filter(run=run).count() == run.summary["traces"] > 0
    paths = {
        run.pk: sorted(
            Trace.objects.filter(source=run_source(run)).values_list("external_id", flat=True)
        )
        for run in (alone, done)
    }
    assert paths[done.pk] == paths[alone.pk]
    assert {k: done.summary[k] for k in ("problems", "nodes", "rounds", "paths")} == {
        k: alone.summary[k] for k in ("problems", "nodes", "rounds", "paths")
    }


def test_two_workers_label_one_monte_carlo_run_together_as_one_job_does(
    two_workers, project, users, server, tmp_path
) -> None:
    planted = planted_traces(project, tmp_path, 8)

    def start(name: str, shard_traces: int) -> MonteCarloRun:
        return start_mc_run(
            project,
            users["owner"],
            completer=f"openai:{server}",
            model="m",
            mode="binary",
            n=2,
            keep_rollouts=True,
            name=name,
            options={"temperature": 1.0, "seed": 0, "max_in_flight": 8},
            shard_traces=shard_traces,
        )

    def labels(run: MonteCarloRun) -> dict[int, tuple]:
        rows = TraceMC.objects.filter(run=run)
        got = {
            r.trace_id: (r.first_error, r.mc, r.hard, r.progress, r.rollouts, r.tokens)
            for r in rows
        }
        assert len(got) == rows.count() == 8
        return got

    alone = done_run(MonteCarloRun, start("alone", 0).pk)
    done = done_run(MonteCarloRun, start("together", 2).pk)

    assert labels(done) == labels(alone)
    assert {trace: row[0] for trace, row in labels(done).items()} == planted
    assert_both_did_shards(done, two_workers, 4)
    assert done.rollouts == alone.rollouts == MCRollout.objects.filter(run=done).count()
    assert done.progress_done == 8 and done.summary["traces"] == 8


# -- a worker killed mid-shard ----------------------------------------------------------------


def sampling_to_kill(project, users, server, search_server, tmp_path):
    """12 problems in shards of 4; mid-shard: some of a shard's problems stored."""
    sums = problems(project, 12)
    run = sample(project, users, server, 2, "killed", shard_traces=4, max_in_flight=1)

    def mid(shard: Shard) -> bool:
        stored = SampledSolution.objects.filter(
            run=run,
            index=0,
            problem_id__gte=shard.first_trace_id,
            problem_id__lte=shard.last_trace_id,
        )
        return 0 < stored.count() < 4

    def check(done: SamplingRun) -> None:
        got = solutions(done)
        assert sorted(got) == sorted((p, j) for p in sums for j in range(2))
        for (problem, index), (answer, correct, _, _) in got.items():
            right = sums[problem]
            wanted = right + 1 if index % 3 == 2 else right  # the server's VARIED pattern
            assert answer == str(wanted) and correct is (wanted == right)
        assert done.solutions == 24

    return run, mid, check


def verification_to_kill(project, users, server, search_server, tmp_path):
    """16 solutions in shards of 4; mid-shard: some of a shard's solutions verified."""
    solved, _ = solved_runs(project, users["owner"], problems=8, n=2, v=1)
    run = verify(
        project, users, server, solved, 2, "killed", shard_traces=4, options={"max_in_flight": 1}
    )

    def mid(shard: Shard) -> bool:
        stored = SolutionVerification.objects.filter(
            run=run,
            index=0,
            solution_id__gte=shard.first_trace_id,
            solution_id__lte=shard.last_trace_id,
        )
        return 0 < stored.count() < 4

    def check(done: VerificationRun) -> None:
        got = verifications(done)
        wanted = SampledSolution.objects.filter(run=solved).values_list("pk", flat=True)
        assert sorted(got) == sorted((s, k) for s in wanted for k in range(2))
        assert done.verifications == 32

    return run, mid, check


def grounded_to_kill(project, users, server, search_server, tmp_path):
    """Three problems in shards of one; mid-shard: the shard's search past its second
    round and not finished."""
    searched = import_problems(project, tmp_path)
    run = start_grounded_run(
        project,
        users["owner"],
        generator=f"openai:{search_server}",
        model="generator",
        seed=SEED,
        name="killed",
        shard_traces=1,
    )

    def mid(shard: Shard) -> bool:
        trees = GroundedTree.objects.filter(run=run, problem_id=shard.first_trace_id)
        return trees.filter(done=False, rounds__gte=2).exists()

    def check(done: GroundedRun) -> None:
        trees = {t.problem_id: t for t in GroundedTree.objects.filter(run=done)}
        assert sorted(trees) == [p.pk for p in searched]
        for problem in searched:
            tree = trees[problem.pk]
            assert [n["id"] for n in tree.state["tree"]["nodes"]] == list(range(tree.nodes))
            assert tree.state == uninterrupted(search_server, problem), problem.text
        assert GroundedPath.objects.filter(run=done).count() == done.summary["traces"] > 0

    return run, mid, check


@pytest.mark.parametrize("kind", [sampling_to_kill, verification_to_kill, grounded_to_kill])
def test_a_worker_killed_mid_shard_leaves_it_to_the_other(
    kind, workers, project, users, server, search_server, tmp_path
) -> None:
    victim = workers("victim", STEPWISE_VAR_DIR=str(tmp_path / "victim"))
    run, mid, check = kind(project, users, server, search_server, tmp_path)
    model = type(run)
    victim_pids = {str(pid) for pid in victim.pool_children()}

    def victim_mid_shard() -> Shard | None:
        for shard in shards.shards_of(model, run.pk).filter(status=JobStatus.RUNNING):
            if shard.worker.rsplit(" pid ", 1)[1] in victim_pids and mid(shard):
                return shard
        return None

    shard = wait_for(victim_mid_shard, timeout=120, interval=0.01)
    victim.kill()
    workers("survivor", STEPWISE_VAR_DIR=str(tmp_path / "survivor"))

    done = done_run(model, run.pk)
    check(done)
    retaken = Shard.objects.get(pk=shard.pk)
    assert retaken.status == JobStatus.DONE and retaken.attempts == 2
    assert retaken.worker.rsplit(" pid ", 1)[1] not in victim_pids
    statuses = shards.shards_of(model, run.pk).values_list("status", flat=True)
    assert set(statuses) == {JobStatus.DONE}
    assert done.progress_done == done.progress_total
