"""Grounded runs on real worker processes against the scripted completer server process: a
worker SIGKILLed mid-search leaves its run to another, which goes on from the last saved
round and stores every problem's tree once, equal to an uninterrupted search, and brings
its paths into the project once."""

from __future__ import annotations

import json

import pytest

from annotator.grounded import create_grounded_run, start_grounded_run
from annotator.grounded_paths import run_source
from annotator.importing import import_file
from annotator.jobs import RunError
from annotator.models import GroundedPath, GroundedRun, GroundedTree, JobStatus, Problem, Trace
from scoring.completers import load_completer
from scoring.grounded.checking import Checker
from scoring.grounded.search import Problem as SearchProblem
from scoring.grounded.search import Search, SearchState, extract_root, new_search
from scoring.grounded.traces import path_traces
from tests.scoring import grounded_server
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

SEED = 3
NUMBERS = [(3, 4, 5), (2, 9, 3), (6, 1, 4)]


@pytest.fixture(scope="module")
def server():
    # A per-request delay, so that a search lasts long enough to kill a worker in it.
    process, url = grounded_server.spawn(delay=0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def import_problems(project, tmp_path) -> list[Problem]:
    records = [
        {
            "id": f"g-{i}",
            "problem": grounded_server.problem(a, b, c),
            "steps": ["A first try."],
            "answer": str((a + b) * c),
        }
        for i, (a, b, c) in enumerate(NUMBERS)
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    import_file(project, path, "jsonl")
    return list(Problem.objects.filter(project=project).order_by("id"))


def uninterrupted(url: str, problem: Problem) -> dict:
    """The same search run through in this process, with nothing saved or resumed."""
    generator = load_completer(f"openai:{url}", "generator")
    search = Search(generator, Checker(writer=generator, judge=None))
    rooted = extract_root(
        SearchProblem(id=str(problem.pk), problem=problem.text, gold=problem.reference_answer),
        generator,
    )
    return search.run(new_search(rooted, SEED, "uct")).to_dict()


def finished(run_id: int) -> GroundedRun | None:
    run = GroundedRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def test_a_killed_worker_s_search_is_finished_by_another_with_every_node_once(
    workers, project, users, server, tmp_path
) -> None:
    problems = import_problems(project, tmp_path)
    first = workers("first")
    run = start_grounded_run(
        project,
        users["owner"],
        generator=f"openai:{server}",
        model="generator",
        judge="tool",
        seed=SEED,
        name="grounded-killed",
    )
    assert run.queue == "default"  # a server completer and the tool judge need no GPU

    def mid_search() -> GroundedTree | None:
        return GroundedTree.objects.filter(
            run=run, problem=problems[1], done=False, rounds__gte=2
        ).first()

    wait_for(mid_search, timeout=180, interval=0.02)
    first.kill()
    at_kill = {t.problem_id: t.rounds for t in GroundedTree.objects.filter(run=run)}
    assert at_kill[problems[1].pk] >= 2 and problems[2].pk not in at_kill

    workers("second")
    done = wait_for(lambda: finished(run.pk), timeout=300)

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert done.summary["resumed_at"] == 1 and done.summary["problems"] == 3
    trees = {t.problem_id: t for t in GroundedTree.objects.filter(run=run)}
    assert sorted(trees) == [p.pk for p in problems]
    for problem in problems:
        tree = trees[problem.pk]
        assert tree.done
        assert [n["id"] for n in tree.state["tree"]["nodes"]] == list(range(tree.nodes))
        assert tree.state == uninterrupted(server, problem), problem.text
    assert done.summary["nodes"] == sum(t.nodes for t in trees.values())
    # the finished trees' paths came into the project once, as traces with their path rows
    wanted = {
        f"p{problem.pk}/n{path.last_node}"
        for problem in problems
        for path in path_traces(SearchState.from_dict(trees[problem.pk].state).tree)
    }
    brought = list(
        Trace.objects.filter(source=run_source(done)).values_list("external_id", flat=True)
    )
    assert sorted(brought) == sorted(wanted) and done.summary["traces"] == len(wanted)
    assert GroundedPath.objects.filter(run=done).count() == len(wanted)


def test_a_run_is_refused_without_a_problem_to_search_or_with_a_bad_completer(
    project, users
) -> None:
    with pytest.raises(RunError, match="no problem with a reference answer"):
        create_grounded_run(
            project, users["owner"], generator="openai:http://127.0.0.1:9/v1", model="m"
        )
    with pytest.raises(RunError, match="served model's name"):
        create_grounded_run(project, users["owner"], generator="openai:http://127.0.0.1:9/v1")
    with pytest.raises(RunError, match="unknown generator option"):
        create_grounded_run(
            project,
            users["owner"],
            generator="openai:http://127.0.0.1:9/v1",
            model="m",
            options={"template": "{problem}"},
        )
