"""Monte-Carlo runs: rollouts from each step prefix on a worker, stored per trace.

A run walks its traces in id order, skipping those it stored; each trace's values
(``TraceMC``) and, when kept, its rollouts (``MCRollout``) are written in one
transaction that first deletes what the run held for that trace. So a worker killed
mid-trace loses only that trace's rollouts (asked again after the restart, stored
once), and a worker that lost its claim and still writes replaces rather than doubles.
The procedures themselves are ``scoring.montecarlo``'s; the completers
``scoring.completers``'.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet, Sum

from annotator import jobs, shards
from annotator.jobs import RunError, clean_selection, selected_traces
from annotator.models import (
    MCMode,
    MCRollout,
    MonteCarloRun,
    Project,
    Trace,
    TraceMC,
    _step_texts,
)
from scoring.montecarlo import MCResult
from scoring.options import COMPLETER_OPTIONS, OptionError, check_completer, check_values
from scoring.types import Trace as ScoringTrace

# The completer options a run may set (their values: ``scoring.options``).
OPTION_KEYS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "chat",
    "max_in_flight",
    "timeout_s",
    "retries",
    "device",
    "batch_size",
    "template",
)


def mc_traces(project: Project, selection: dict[str, Any]) -> QuerySet[Trace]:
    """The selected traces that have a reference answer to grade rollouts against."""
    return selected_traces(project, selection).exclude(problem__reference_answer="")


def queue_for(completer: str, options: dict[str, Any]) -> str:
    """A server completer only waits on the network, and a local model told
    ``device=cpu`` needs no GPU: any ``default`` worker runs them; other local models
    need the ``gpu`` queue."""
    if completer.startswith("openai:") or options.get("device") == "cpu":
        return "default"
    return "gpu"


def create_mc_run(
    project: Project,
    user,
    *,
    completer: str,
    model: str = "",
    mode: str = MCMode.EXHAUSTIVE,
    n: int = 8,
    options: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    keep_rollouts: bool = False,
    name: str = "",
    shard_traces: int | None = None,
) -> MonteCarloRun:
    """A queued run row (not yet sent); ``RunError`` says what is wrong with the request.
    ``shard_traces`` splits the run into shards, as for scoring runs
    (``runs.create_run``)."""
    options = options or {}
    check_mc_request(completer, model, mode, n, options)
    selection = clean_selection(selection or {})
    name = name or f"mc-{mode}-{MonteCarloRun.objects.filter(project=project).count() + 1}"
    if MonteCarloRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a Monte-Carlo run named {name!r}")
    split = selection.get("split")
    if split and not project.traces.filter(split=split).exists():
        splits = ", ".join(s for s in project.traces.facets("split")["splits"] if s)
        raise RunError(f"no split named {split!r}; this project's: {splits}", field="split")
    if not mc_traces(project, selection).exists():
        raise RunError("the selection holds no traces with a reference answer")
    shard_traces = shards.check_size(shard_traces)
    with transaction.atomic():  # the run with its shards, or nothing
        run = MonteCarloRun.objects.create(
            project=project,
            name=name,
            completer=completer,
            model=model,
            mode=mode,
            n=n,
            options=options,
            selection=selection,
            keep_rollouts=keep_rollouts,
            created_by=user,
            queue=queue_for(completer, options),
            max_attempts=settings.JOB_MAX_ATTEMPTS,
        )
        if shard_traces:
            shards.plan(run, mc_traces(project, selection), shard_traces)
    return run


def check_mc_request(
    completer: str, model: str, mode: str, n: int, options: dict[str, Any]
) -> None:
    """``RunError`` naming what is wrong with a run's completer or options: the rules
    of ``scoring.options`` (the command line's), a server URL over http(s) and not
    link-local, a local model inside ``MODEL_DIR``. ``create_mc_run`` calls it; a
    form or serializer may call it to refuse early."""
    try:
        check_completer(completer, settings.MODEL_DIR)
    except OptionError as exc:
        raise RunError(str(exc), field=exc.name) from None
    if completer.startswith("openai:") and not model:
        raise RunError("a server completer needs the served model's name")
    if mode not in MCMode.values:
        raise RunError(f"mode is one of {MCMode.values}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
        raise RunError("n (rollouts per prefix) must be between 1 and 256")
    if not isinstance(options, dict):
        raise RunError("options must be an object of name: value")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise RunError(f"unknown option(s) {unknown}; use {list(OPTION_KEYS)}")
    try:
        check_values(options, COMPLETER_OPTIONS)
    except OptionError as exc:
        raise RunError(str(exc), field=exc.name) from None


def start_mc_run(project: Project, user, **kwargs: Any) -> MonteCarloRun:
    """Create a run and send it to its queue; ``EnqueueError`` when the broker is down."""
    return jobs.enqueue(create_mc_run(project, user, **kwargs))


def _load(run: MonteCarloRun) -> tuple[Any, Any]:
    from scoring.completers import load_completer
    from scoring.montecarlo import PromptTemplate

    options = dict(run.options)
    template = options.pop("template", None)
    try:
        completer = load_completer(run.completer, run.model or None, **options)
        return completer, PromptTemplate(template) if template else PromptTemplate()
    except (OSError, ValueError, TypeError) as exc:  # a wrong path, a bad option
        raise jobs.JobRefused(f"could not load the completer {run.completer}: {exc}") from exc


def run_montecarlo_job(run: MonteCarloRun, context: jobs.JobContext | None = None) -> dict:
    """Label what the run has not stored yet, one trace at a time: the whole run, or one
    shard's traces (``context.restrict``; the run's summary is then ``finish_mc_run``'s,
    once every shard is done)."""
    from scoring.completers import CompleterError
    from scoring.montecarlo import estimate

    everything = mc_traces(run.project, run.selection)
    if context:
        everything = context.restrict(everything)
    total = everything.count()
    todo = everything.exclude(Exists(TraceMC.objects.filter(run=run, trace=OuterRef("pk"))))
    done = total - todo.count()
    whole = context is None or context.shard is None
    if whole:
        MonteCarloRun.objects.filter(pk=run.pk).update(
            summary={"resumed_at": done}, progress_total=total, progress_done=done
        )
    if context:
        context.progress(done, total)
    completer, template = _load(run)
    try:
        for trace in todo.select_related("problem").order_by("id").iterator(chunk_size=200):
            steps = _step_texts([trace.pk])[trace.pk]
            item = ScoringTrace(
                problem=trace.problem.text,
                steps=tuple(steps),
                reference_answer=trace.problem.reference_answer,
                id=str(trace.pk),
            )
            try:
                result = estimate(
                    item,
                    completer,
                    run.n,
                    run.mode,
                    template=template,
                    keep_rollouts=run.keep_rollouts,
                )
            except CompleterError as exc:  # the server's own words, not a traceback
                raise jobs.JobRefused(str(exc)) from exc
            store_result(run, trace.pk, result)
            done += 1
            if context:
                context.progress(done, total)
    finally:
        if hasattr(completer, "close"):
            completer.close()
    if not whole:
        return {"traces": done}
    return finish_mc_run(run)


def finish_mc_run(run: MonteCarloRun) -> dict[str, Any]:
    """The summary of a run whose every trace is labelled: its totals, also stored on
    the run."""
    totals = TraceMC.objects.filter(run=run).aggregate(
        rollouts=Sum("rollouts"), tokens=Sum("tokens")
    )
    MonteCarloRun.objects.filter(pk=run.pk).update(
        rollouts=totals["rollouts"] or 0, tokens=totals["tokens"] or 0
    )
    resumed_at = MonteCarloRun.objects.get(pk=run.pk).summary.get("resumed_at", 0)
    return {
        "traces": TraceMC.objects.filter(run=run).count(),
        "resumed_at": resumed_at,
        "rollouts": totals["rollouts"] or 0,
        "tokens": totals["tokens"] or 0,
    }


def store_result(run: MonteCarloRun, trace_id: int, result: MCResult) -> None:
    """One trace's values and rollouts in one transaction, replacing what the run held."""
    with transaction.atomic():
        TraceMC.objects.filter(run=run, trace_id=trace_id).delete()
        MCRollout.objects.filter(run=run, trace_id=trace_id).delete()
        TraceMC.objects.create(
            run=run,
            trace_id=trace_id,
            mc=list(result.mc),
            hard=list(result.hard),
            progress=list(result.progress),
            problem_value=result.problem_value,
            first_error=result.first_error,
            rollouts=result.rollouts,
            tokens=result.tokens,
            step_rollouts=list(result.step_rollouts),
            step_tokens=list(result.step_tokens),
        )
        if result.samples:
            counters: dict[int, int] = {}
            rows = []
            for sample in result.samples:
                index = counters.get(sample.step_index, 0)
                counters[sample.step_index] = index + 1
                rows.append(
                    MCRollout(
                        run=run,
                        trace_id=trace_id,
                        step_index=sample.step_index,
                        sample=index,
                        text=sample.text,
                        answer=sample.answer or "",
                        correct=sample.correct,
                    )
                )
            MCRollout.objects.bulk_create(rows)


def run_totals(run: MonteCarloRun) -> dict[str, int]:
    """Rollouts, tokens and traces stored so far (live while the run runs)."""
    totals = TraceMC.objects.filter(run=run).aggregate(
        rollouts=Sum("rollouts"), tokens=Sum("tokens")
    )
    return {
        "traces": TraceMC.objects.filter(run=run).count(),
        "rollouts": totals["rollouts"] or 0,
        "tokens": totals["tokens"] or 0,
    }


def kept_rollouts(run: MonteCarloRun, trace: Trace, limit: int = 400) -> list[MCRollout]:
    """The run's kept rollouts of one trace, by step (-1: the problem alone), at most
    ``limit`` (a long trace at a large N holds thousands)."""
    return list(
        MCRollout.objects.filter(run=run, trace=trace).order_by("step_index", "sample")[:limit]
    )


def mc_rows_for_trace(trace: Trace) -> list[dict[str, Any]]:
    """The trace's values in each finished-or-running run of its project, newest first:
    ``{"run", "cells": [(mc, progress, hard) per step], "first_error", "problem_value"}``."""
    rows = []
    for value in TraceMC.objects.filter(trace=trace).select_related("run").order_by("-run_id"):
        cells = [
            {"mc": mc, "progress": progress, "hard": hard}
            for mc, progress, hard in zip(value.mc, value.progress, value.hard, strict=True)
        ]
        rows.append(
            {
                "run": value.run,
                "cells": cells,
                "first_error": value.first_error,
                "problem_value": value.problem_value,
                "rollouts": value.rollouts,
            }
        )
    return rows
