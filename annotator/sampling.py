"""Sampling runs: N solutions per problem on a worker, stored as traces of one generator.

A run walks its problems in order, skipping those whose N solutions it stored; a
problem's traces, steps and ``SampledSolution`` rows are written in one transaction
that first deletes what the run held for that problem. A run may be split into shards
of problems (``annotator/shards.py``) that several workers take, each walking its
shard's problems the same way. So a worker killed mid-problem
loses only that problem's solutions (asked again after the restart, stored once), and a
worker that lost its claim and still writes replaces rather than doubles. The requests
go out ``max_in_flight`` problems at a time (``scoring.sampling``, ``scoring.completers``).

A completer ``sc-genrm:DIR`` imports the samples files of "When To Solve, When To
Verify" (``DIR/{i}.yaml``, ``scoring.formats.sc_genrm``) as they are: problem i becomes a
project problem (its question, its ``gt_answer`` as the reference answer), sample j the
trace ``i/j`` with the reference's normalised answer (``answer_style``) graded as the
reference grades it. That data holds no token counts (stored as 0; lambda is given for
it when the curves are drawn). DIR must be inside ``MODEL_DIR``, where the workers keep
what they read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum

from annotator import jobs, shards
from annotator.jobs import RunError, clean_selection, selected_traces
from annotator.models import Problem, Project, SampledSolution, SamplingRun, Step, Trace, text_hash
from annotator.montecarlo import queue_for
from scoring.options import COMPLETER_OPTIONS, OptionError, check_completer, check_values

IMPORT_PREFIX = "sc-genrm:"
# The completer options a run may set (their values: ``scoring.options``), ``template``
# (with {problem}), ``split`` (the step splitter) and, for an import, ``answer_style``.
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
    "split",
    "answer_style",
)
# Every sampling parameter a completer run must state (the rest are explicit defaults).
REQUIRED_SAMPLING = ("temperature", "top_p", "max_tokens")
MAX_N = 4096


def is_import(completer: str) -> bool:
    return completer.startswith(IMPORT_PREFIX)


def import_dir(spec: str, field: str = "completer") -> Path:
    """The directory of an ``sc-genrm:DIR`` spec; ``RunError`` unless it is an absolute
    path inside ``MODEL_DIR``."""
    target = spec.removeprefix(IMPORT_PREFIX)
    root = Path(settings.MODEL_DIR).resolve()
    path = Path(target)
    try:
        inside = path.is_absolute() and path.resolve().is_relative_to(root)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise RunError(
            f"the directory must be an absolute path inside {root}, not {target!r}", field
        )
    return path.resolve()


def check_options(options: Any, allowed: Sequence[str] = OPTION_KEYS) -> None:
    if not isinstance(options, dict):
        raise RunError("options must be an object of name: value")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise RunError(f"unknown option(s) {unknown}; use {list(allowed)}")
    try:
        check_values(options, COMPLETER_OPTIONS)
    except OptionError as exc:
        raise RunError(str(exc), field=exc.name) from None
    if "split" in options:
        from scoring.steps import SPLITTERS

        if options["split"] not in SPLITTERS:
            raise RunError(f"split is one of {sorted(SPLITTERS)}", "split")
    if "answer_style" in options:
        from scoring.formats.sc_genrm import ANSWER_STYLES

        if options["answer_style"] not in ANSWER_STYLES:
            raise RunError(f"answer_style is one of {list(ANSWER_STYLES)}", "answer_style")
    template = options.get("template")
    if template is not None:
        try:
            template.format(problem="")
        except (KeyError, IndexError, ValueError):
            raise RunError(
                "the template may hold {problem} and no other field", "template"
            ) from None


def check_completer_spec(completer: str, model: str) -> None:
    """``RunError`` unless the completer is a server with its model's name, a local
    model inside ``MODEL_DIR``, or an import directory inside it."""
    if is_import(completer):
        import_dir(completer)
        return
    try:
        check_completer(completer, settings.MODEL_DIR)
    except OptionError as exc:
        raise RunError(str(exc), field=exc.name) from None
    if completer.startswith("openai:") and not model:
        raise RunError("a server completer needs the served model's name", "model")


def sampling_problems(project: Project, selection: dict[str, Any]) -> QuerySet[Problem]:
    """The problems of the selected traces that have a reference answer, in id order."""
    problem_ids = selected_traces(project, selection).values("problem_id")
    return (
        Problem.objects.filter(project=project, pk__in=problem_ids)
        .exclude(reference_answer="")
        .order_by("id")
    )


def create_sampling_run(
    project: Project,
    user,
    *,
    completer: str,
    model: str = "",
    n: int,
    options: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    generator: str = "",
    name: str = "",
    labelling_queue: bool = False,
    shard_traces: int | None = None,
) -> SamplingRun:
    """A queued run row (not yet sent); ``RunError`` says what is wrong with the request.
    ``labelling_queue``: whether its solutions join the labelling queue (by default they
    do not: a sampling run of thousands would flood it). ``shard_traces`` splits the run
    into shards of that many problems, as for scoring runs (``runs.create_run``); an
    import, whose problems come from its files as it reads them, is one job."""
    options = dict(options or {})
    check_completer_spec(completer, model)
    check_options(options)
    importing = is_import(completer)
    if importing:
        if selection:
            raise RunError("an import takes its problems from its files, not a selection")
    else:
        missing = [key for key in REQUIRED_SAMPLING if key not in options]
        if missing:
            raise RunError(
                f"state every sampling parameter: {', '.join(missing)} missing", missing[0]
            )
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise RunError(f"n (solutions per problem) must be between 1 and {MAX_N}", "n")
    selection = clean_selection(selection or {})
    name = name or f"sampling-{SamplingRun.objects.filter(project=project).count() + 1}"
    if SamplingRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a sampling run named {name!r}", "name")
    if not importing and not sampling_problems(project, selection).exists():
        raise RunError("the selection holds no problems with a reference answer")
    if importing:
        if shard_traces:
            raise RunError("an import is one job: shard_traces is 0", "shard_traces")
        shard_traces = 0
    shard_traces = shards.check_size(shard_traces)
    with transaction.atomic():  # the run with its shards, or nothing
        run = SamplingRun.objects.create(
            project=project,
            name=name,
            completer=completer,
            model=model,
            generator=(generator or model or name)[:200],
            n=n,
            options=options,
            selection=selection,
            labelling_queue=labelling_queue,
            created_by=user,
            queue="default" if importing else queue_for(completer, options),
            max_attempts=settings.JOB_MAX_ATTEMPTS,
        )
        if shard_traces:
            shards.plan(run, sampling_problems(project, selection), shard_traces)
    return run


def start_sampling_run(project: Project, user, **kwargs: Any) -> SamplingRun:
    """Create a run and send it to its queue; ``EnqueueError`` when the broker is down."""
    return jobs.enqueue(create_sampling_run(project, user, **kwargs))


def load_completer_for(run: Any) -> Any:
    """The run's completer, its sampling options applied; ``JobRefused`` when it cannot
    be loaded (a wrong path, a bad option)."""
    from scoring.completers import load_completer

    keys = {k: v for k, v in run.options.items() if k not in ("template", "split", "answer_style")}
    try:
        return load_completer(run.completer, run.model or None, **keys)
    except (OSError, ValueError, TypeError) as exc:
        raise jobs.JobRefused(f"could not load the completer {run.completer}: {exc}") from exc


# -- the work ------------------------------------------------------------------------------


def _stored(run: SamplingRun, problems: QuerySet[Problem]) -> set[int]:
    """The problems of ``problems`` whose solutions the run stored (all of a problem's
    are committed together, so one is enough)."""
    rows = SampledSolution.objects.filter(run=run, index=0, problem__in=problems.values("pk"))
    return set(rows.values_list("problem_id", flat=True))


def run_sampling_job(run: SamplingRun, context: jobs.JobContext | None = None) -> dict:
    """Sample (or import) what the run has not stored yet, a problem at a time: the
    whole run, or one shard's problems (``context.restrict``; the run's summary is then
    ``finish_sampling_run``'s, once every shard is done)."""
    if is_import(run.completer):
        return _import_samples(run, context)
    from scoring.completers import CompleterError
    from scoring.sampling import SOLVE_TEMPLATE, sample_solutions

    everything = sampling_problems(run.project, run.selection)
    if context:
        everything = context.restrict(everything)
    problems = list(everything.values_list("pk", flat=True))
    total = len(problems)
    stored = _stored(run, everything)
    todo = [pk for pk in problems if pk not in stored]
    done = total - len(todo)
    whole = context is None or context.shard is None
    if whole:
        _started(run, done, total, context)
    else:
        context.progress(done, total)
    completer = load_completer_for(run)
    chunk = int(run.options.get("max_in_flight", 32))
    template = run.options.get("template", SOLVE_TEMPLATE)
    split = run.options.get("split", "paragraphs")
    try:
        for start in range(0, len(todo), chunk):
            rows = list(Problem.objects.filter(pk__in=todo[start : start + chunk]).order_by("id"))
            try:
                solved = sample_solutions(
                    completer,
                    [(p.text, p.reference_answer) for p in rows],
                    run.n,
                    template=template,
                    split=split,
                )
            except CompleterError as exc:  # the server's own words, not a traceback
                raise jobs.JobRefused(str(exc)) from exc
            for problem, solutions in zip(rows, solved, strict=True):
                store_solutions(
                    run,
                    problem,
                    str(problem.pk),
                    [(s.text, s.steps, s.answer, s.correct, s.tokens) for s in solutions],
                )
                done += 1
                if context:
                    context.progress(done, total)
    finally:
        if hasattr(completer, "close"):
            completer.close()
    if not whole:
        return {"problems": done}
    return _finished(run, total)


def finish_sampling_run(run: SamplingRun) -> dict:
    """The summary of a sharded run whose every problem is sampled."""
    return _finished(run, run.progress_total)


def _started(run: Any, done: int, total: int, context: jobs.JobContext | None) -> None:
    type(run).objects.filter(pk=run.pk).update(
        summary={"resumed_at": done}, progress_total=total, progress_done=done
    )
    if context:
        context.progress(done, total)


def _finished(run: SamplingRun, problems: int) -> dict:
    totals = run_totals(run)
    SamplingRun.objects.filter(pk=run.pk).update(
        solutions=totals["solutions"], tokens=totals["tokens"]
    )
    resumed_at = SamplingRun.objects.get(pk=run.pk).summary.get("resumed_at", 0)
    return {"problems": problems, "resumed_at": resumed_at, **totals}


def store_solutions(
    run: SamplingRun,
    problem: Problem,
    key: str,
    solutions: Sequence[tuple[str, Sequence[str], str | None, bool, int]],
) -> None:
    """One problem's solutions ``(text, steps, answer, correct, tokens)`` in one
    transaction, replacing what the run held for it. Trace ``key/j`` is solution j."""
    with transaction.atomic():
        Trace.objects.filter(
            project=run.project, source=run.source, sampled__problem=problem, sampled__run=run
        ).delete()
        traces = Trace.objects.bulk_create(
            Trace(
                project=run.project,
                problem=problem,
                source=run.source,
                source_format="sampling",
                external_id=f"{key}/{j}",
                generator=run.generator,
                final_answer=answer or "",
                final_answer_correct=correct,
                metadata={"tokens": tokens, "sampling_run": run.name},
                num_steps=len(steps),
            )
            for j, (_, steps, answer, correct, tokens) in enumerate(solutions)
        )
        Step.objects.bulk_create(
            Step(trace=trace, index=i, text=text)
            for trace, (_, steps, *_rest) in zip(traces, solutions, strict=True)
            for i, text in enumerate(steps)
        )
        SampledSolution.objects.bulk_create(
            SampledSolution(run=run, problem=problem, index=j, trace=trace, tokens=solution[4])
            for j, (trace, solution) in enumerate(zip(traces, solutions, strict=True))
        )


def _import_samples(run: SamplingRun, context: jobs.JobContext | None) -> dict:
    from scoring.formats.base import ImportFormatError
    from scoring.formats.sc_genrm import (
        predicted_answer,
        read_problem_record,
        reference_answer,
        reference_correct,
        samples_files,
    )
    from scoring.sampling import solution_steps

    directory = import_dir(run.completer)
    style = run.options.get("answer_style", "minerva")
    split = run.options.get("split", "paragraphs")
    try:
        if not directory.is_dir():
            raise ImportFormatError(str(directory), "is not a directory")
        files = samples_files(directory)
        total = len(files)
        complete = {
            external_id.split("/")[0]
            for external_id in SampledSolution.objects.filter(run=run, index=0).values_list(
                "trace__external_id", flat=True
            )
        }
        done = len(complete)
        _started(run, done, total, context)
        for i, path in enumerate(files):
            if str(i) in complete:
                continue
            question, texts, gt_answer = read_problem_record(path)
            if question is None:
                raise ImportFormatError(str(path), "missing", field="question")
            gold = reference_answer(gt_answer, str(path))
            texts = texts[: run.n]
            problem = _problem(run.project, question, gold, i)
            graded: dict[str, bool] = {}
            solutions = []
            for text in texts:
                answer = predicted_answer(text, style)
                if answer is not None and answer not in graded:
                    graded[answer] = bool(reference_correct(answer, gold))
                correct = answer is not None and graded[answer]
                solutions.append((text, solution_steps(text, split), answer, correct, 0))
            store_solutions(run, problem, str(i), solutions)
            done += 1
            if context:
                context.progress(done, total)
    except ImportFormatError as exc:
        raise jobs.JobRefused(str(exc)) from exc
    return _finished(run, total)


def _problem(project: Project, question: str, gold: str, index: int) -> Problem:
    """The project's problem with this text (created with the reference answer)."""
    problem, _ = Problem.objects.get_or_create(
        project=project,
        text_hash=text_hash(question),
        defaults={
            "text": question,
            "reference_answer": gold,
            "source": "sc-genrm",
            "external_id": str(index),
        },
    )
    return problem


def run_totals(run: SamplingRun) -> dict[str, int]:
    """Problems, solutions, correct ones and tokens stored so far (live while it runs)."""
    rows = SampledSolution.objects.filter(run=run)
    totals = rows.aggregate(
        solutions=Count("id"),
        tokens=Sum("tokens"),
        correct=Count("id", filter=Q(trace__final_answer_correct=True)),
        problems=Count("problem_id", distinct=True),
    )
    return {
        "problems_stored": totals["problems"] or 0,
        "solutions": totals["solutions"] or 0,
        "correct": totals["correct"] or 0,
        "tokens": totals["tokens"] or 0,
    }


def iter_problem_solutions(run: SamplingRun) -> Iterator[tuple[int, list[SampledSolution]]]:
    """``(problem id, its solutions in index order)`` per problem, in problem order."""
    current: int | None = None
    bucket: list[SampledSolution] = []
    rows = (
        SampledSolution.objects.filter(run=run)
        .select_related("trace")
        .order_by("problem_id", "index")
        .iterator(chunk_size=2000)
    )
    for row in rows:
        if row.problem_id != current and bucket:
            yield current, bucket  # type: ignore[misc]
            bucket = []
        current = row.problem_id
        bucket.append(row)
    if bucket:
        yield current, bucket  # type: ignore[misc]
