"""Grounded runs: GroundedPRM's tree search for each problem, on a worker, stored per round.

A run walks the problems of its selected traces that have a reference answer, in id order.
Each problem's search state (``scoring.grounded.search.SearchState``) is saved in its
``GroundedTree`` row after every round, so a worker killed mid-search loses only the round
it was in: the next worker loads the saved state and goes on from there (the search draws
its randomness per round from the seed, so it makes the same choices), and every node is
stored once. Finished problems are skipped. A run may be split into shards of problems
(``annotator/shards.py``) that several workers take. Once every problem is searched, the trees'
paths come into the project as traces (``annotator.grounded_paths``). The search, the tools and the judge are
``scoring.grounded``'s; the completers ``scoring.completers``'.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from annotator import jobs, shards
from annotator.grounded_paths import bring_in_paths
from annotator.jobs import RunError, clean_selection, selected_traces
from annotator.models import (
    GroundedPath,
    GroundedRun,
    GroundedSelection,
    GroundedTree,
    Problem,
    Project,
)
from annotator.montecarlo import OPTION_KEYS, queue_for
from scoring.options import COMPLETER_OPTIONS, OptionError, check_completer, check_values

TOOL = "tool"
# A Monte-Carlo run's completer options, less its prompt template (the search has its own).
COMPLETER_OPTION_KEYS = tuple(key for key in OPTION_KEYS if key != "template")


def grounded_problems(project: Project, selection: dict[str, Any]) -> QuerySet[Problem]:
    """The problems of the selected traces that have a reference answer, by id."""
    traces = selected_traces(project, selection).filter(problem=OuterRef("pk"))
    return (
        Problem.objects.filter(project=project)
        .exclude(reference_answer="")
        .filter(Exists(traces))
        .order_by("id")
    )


def _check_completer(spec: str, model: str, options: dict[str, Any], role: str) -> None:
    try:
        check_completer(spec, settings.MODEL_DIR)
    except OptionError as exc:
        raise RunError(f"{role}: {exc}", field=exc.name) from None
    if spec.startswith("openai:") and not model:
        raise RunError(f"a server {role} needs the served model's name")
    if not isinstance(options, dict):
        raise RunError(f"the {role}'s options must be an object of name: value")
    unknown = sorted(set(options) - set(COMPLETER_OPTION_KEYS))
    if unknown:
        raise RunError(f"unknown {role} option(s) {unknown}; use {list(COMPLETER_OPTION_KEYS)}")
    try:
        check_values(options, COMPLETER_OPTIONS)
    except OptionError as exc:
        raise RunError(f"{role}: {exc}", field=exc.name) from None


def create_grounded_run(
    project: Project,
    user,
    *,
    generator: str,
    model: str = "",
    judge: str = TOOL,
    judge_model: str = "",
    search_selection: str = GroundedSelection.UCT,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    judge_options: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    name: str = "",
    shard_traces: int | None = None,
) -> GroundedRun:
    """A queued run row (not yet sent); ``RunError`` says what is wrong with the request.
    ``shard_traces`` splits the run into shards of that many problems, as for scoring
    runs (``runs.create_run``)."""
    options = options or {}
    judge_options = judge_options or {}
    _check_completer(generator, model, options, "generator")
    if judge != TOOL:
        _check_completer(judge, judge_model or model, judge_options, "judge")
    if search_selection not in GroundedSelection.values:
        raise RunError(f"selection is one of {GroundedSelection.values}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise RunError("seed must be a whole number from 0 to 2**32 - 1")
    selection = clean_selection(selection or {})
    name = name or f"grounded-{GroundedRun.objects.filter(project=project).count() + 1}"
    if GroundedRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a grounded run named {name!r}")
    if not grounded_problems(project, selection).exists():
        raise RunError("the selection holds no problem with a reference answer")
    local = [(spec, opts) for spec, opts in ((generator, options), (judge, judge_options))]
    queue = "gpu" if any(queue_for(s, o) == "gpu" for s, o in local if s != TOOL) else "default"
    shard_traces = shards.check_size(shard_traces)
    with transaction.atomic():  # the run with its shards, or nothing
        run = GroundedRun.objects.create(
            project=project,
            name=name,
            generator=generator,
            model=model,
            judge=judge,
            judge_model=judge_model,
            search_selection=search_selection,
            seed=seed,
            options=options,
            judge_options=judge_options,
            selection=selection,
            created_by=user,
            queue=queue,
            max_attempts=settings.JOB_MAX_ATTEMPTS,
        )
        if shard_traces:
            shards.plan(run, grounded_problems(project, selection), shard_traces)
    return run


def start_grounded_run(project: Project, user, **kwargs: Any) -> GroundedRun:
    """Create a run and send it to its queue; ``EnqueueError`` when the broker is down."""
    return jobs.enqueue(create_grounded_run(project, user, **kwargs))


def _load(run: GroundedRun) -> tuple[Any, Any]:
    from scoring.completers import load_completer
    from scoring.grounded.checking import Checker
    from scoring.grounded.search import Search

    try:
        generator = load_completer(run.generator, run.model or None, **run.options)
        judge = None
        if run.judge != TOOL:
            judge = load_completer(run.judge, run.judge_model or run.model, **run.judge_options)
    except (OSError, ValueError, TypeError) as exc:  # a wrong path, a bad option
        raise jobs.JobRefused(f"could not load a completer: {exc}") from exc
    return generator, Search(generator, Checker(writer=judge or generator, judge=judge))


def run_grounded_job(run: GroundedRun, context: jobs.JobContext | None = None) -> dict:
    """Search what the run has not finished, one problem at a time, saving each round:
    the whole run, or one shard's problems (``context.restrict``; the paths come in and
    the run's summary is made by ``finish_grounded_run``, once every shard is done)."""
    from scoring.completers import CompleterError
    from scoring.grounded.search import Problem as SearchProblem
    from scoring.grounded.search import SearchState, extract_root, new_search

    everything = grounded_problems(run.project, run.selection)
    if context:
        everything = context.restrict(everything)
    total = everything.count()
    finished = GroundedTree.objects.filter(run=run, done=True, problem__in=everything)
    done = finished.count()
    whole = context is None or context.shard is None
    if whole:
        GroundedRun.objects.filter(pk=run.pk).update(
            summary={"resumed_at": done}, progress_total=total, progress_done=done
        )
    if context:
        context.progress(done, total)
    generator, search = _load(run)
    todo = everything.exclude(pk__in=finished.values("problem_id"))
    try:
        for problem in todo.iterator(chunk_size=200):
            row = GroundedTree.objects.filter(run=run, problem=problem).first()
            try:
                if row is not None:
                    state = SearchState.from_dict(row.state)
                else:
                    rooted = extract_root(
                        SearchProblem(
                            id=str(problem.pk),
                            problem=problem.text,
                            gold=problem.reference_answer,
                        ),
                        generator,
                    )
                    state = new_search(rooted, run.seed, run.search_selection)
                    row = GroundedTree.objects.create(
                        run=run, problem=problem, state=state.to_dict(), nodes=1
                    )

                def save(state: SearchState, row: GroundedTree = row) -> None:
                    if context:
                        context.check()  # a worker that lost the job writes nothing more
                    GroundedTree.objects.filter(pk=row.pk).update(
                        state=state.to_dict(),
                        rounds=state.tree.rounds,
                        nodes=len(state.tree.nodes),
                        done=state.done,
                    )

                search.run(state, on_round=save)
            except CompleterError as exc:  # the server's own words, not a traceback
                raise jobs.JobRefused(str(exc)) from exc
            done += 1
            if context:
                context.progress(done, total)
    finally:
        for completer in {id(c): c for c in (generator, search.checker.judge) if c}.values():
            if hasattr(completer, "close"):
                completer.close()
    if context:
        context.check()
    if not whole:
        return {"problems": done}
    return _finish(run, total)


def finish_grounded_run(run: GroundedRun) -> dict:
    """The paths of a sharded run whose every problem is searched, and its summary."""
    return _finish(run, run.progress_total)


def _finish(run: GroundedRun, total: int) -> dict:
    brought = bring_in_paths(run)  # one transaction; writes nothing twice
    trees = GroundedTree.objects.filter(run=run)
    resumed_at = GroundedRun.objects.get(pk=run.pk).summary.get("resumed_at", 0)
    return {
        "problems": total,
        "resumed_at": resumed_at,
        "nodes": sum(trees.values_list("nodes", flat=True)),
        "rounds": sum(trees.values_list("rounds", flat=True)),
        "paths": brought["paths"],
        # every trace the run brought in, this attempt's or an earlier one's
        "traces": GroundedPath.objects.filter(run=run).count(),
    }
