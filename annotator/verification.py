"""Verification runs: V verifications of each sampled solution on a worker.

A run walks the solutions of its sampling run (the first ``per_problem`` of each problem,
all with 0) in problem and solution order, skipping those it verified; a solution's V
verifications are written in one transaction that first deletes what the run held for
that solution, so a worker killed mid-run loses at most the solutions in flight, and
each (solution, verification) is stored once. Requests go out ``max_in_flight``
solutions at a time. A run may be split into shards of solutions
(``annotator/shards.py``) that several workers take, each walking its shard's solutions
the same way. The verifiers are ``scoring.verifiers``'.

A completer ``sc-genrm:DIR`` imports the reference's ``DIR/problem_i/solution_j.yaml``
files (``scoring.formats.sc_genrm``) into a run over a sampling run that imported the
same problems (trace ``i/j`` is sample j of problem i): each verification's text, its
p(yes)/p(no) (-1: none) and its text verdict; no token counts (stored as 0).

The solution a verifier reads is the trace's steps joined by a blank line (the
paragraphs a sampling run split it into).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, QuerySet, Sum

from annotator import jobs, shards
from annotator.jobs import RunError
from annotator.models import (
    JobStatus,
    Project,
    SampledSolution,
    SamplingRun,
    SolutionVerification,
    VerificationRun,
    VerifierKind,
    _step_texts,
)
from annotator.montecarlo import queue_for
from annotator.sampling import (
    check_completer_spec,
    check_options,
    import_dir,
    is_import,
    load_completer_for,
)

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
MAX_V = 1024


def default_options(verifier: str, model: str, v: int) -> dict[str, Any]:
    """The sampling each verifier's reference uses, made explicit on the run: GenRM-Base
    the sc-genrm-scaling README's (``scoring.verifiers.GENRM_BASE_SAMPLING``), the critic
    ProcessBench's for V samples (``scoring.adapters.llm_critic.processbench_sampling``);
    both one user turn (``chat``)."""
    if verifier == VerifierKind.GENRM_BASE:
        from scoring.verifiers import GENRM_BASE_SAMPLING

        return {**GENRM_BASE_SAMPLING, "chat": True}
    from scoring.adapters.llm_critic import processbench_sampling

    s = processbench_sampling(model, v)
    return {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "seed": s.seed,
        "chat": True,
    }


def create_verification_run(
    project: Project,
    user,
    *,
    sampling_run: SamplingRun,
    verifier: str = VerifierKind.GENRM_BASE,
    completer: str,
    model: str = "",
    v: int,
    per_problem: int = 0,
    options: dict[str, Any] | None = None,
    name: str = "",
    shard_traces: int | None = None,
) -> VerificationRun:
    """A queued run row (not yet sent); ``RunError`` says what is wrong with the request.
    ``shard_traces`` splits the run into shards of that many solutions, as for scoring
    runs (``runs.create_run``); an import, which reads its files in order, is one job."""
    if sampling_run.project_id != project.pk:
        raise RunError("no such sampling run in this project", "sampling_run")
    if sampling_run.status != JobStatus.DONE:
        # its solutions are what the run verifies, listed when it starts
        raise RunError(f"sampling run {sampling_run.name} has not finished", "sampling_run")
    if verifier not in VerifierKind.values:
        raise RunError(f"verifier is one of {VerifierKind.values}", "verifier")
    check_completer_spec(completer, model)
    options = dict(options or {})
    check_options(options, OPTION_KEYS)
    if "template" in options:
        if verifier != VerifierKind.GENRM_BASE:
            raise RunError("only GenRM-Base takes a template", "template")
        if "Question: {}" not in options["template"] or "Solution: {}" not in options["template"]:
            raise RunError("the template holds 'Question: {}' and 'Solution: {}'", "template")
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_V:
        raise RunError(f"V (verifications per solution) must be between 1 and {MAX_V}", "v")
    if isinstance(per_problem, bool) or not isinstance(per_problem, int) or per_problem < 0:
        raise RunError("per_problem must be a whole number (0: every solution)", "per_problem")
    importing = is_import(completer)
    if importing and verifier != VerifierKind.GENRM_BASE:
        raise RunError("the reference's verifications are GenRM's", "verifier")
    if not importing:
        options = {**default_options(verifier, model, v), **options}
    name = name or f"verification-{VerificationRun.objects.filter(project=project).count() + 1}"
    if VerificationRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a verification run named {name!r}", "name")
    if importing:
        if shard_traces:
            raise RunError("an import is one job: shard_traces is 0", "shard_traces")
        shard_traces = 0
    shard_traces = shards.check_size(shard_traces)
    with transaction.atomic():  # the run with its shards, or nothing
        run = VerificationRun.objects.create(
            project=project,
            name=name,
            sampling_run=sampling_run,
            verifier=verifier,
            completer=completer,
            model=model,
            v=v,
            per_problem=per_problem,
            options=options,
            created_by=user,
            queue="default" if importing else queue_for(completer, options),
            max_attempts=settings.JOB_MAX_ATTEMPTS,
        )
        if shard_traces:
            shards.plan(run, solutions_of(run), shard_traces)
    return run


def start_verification_run(project: Project, user, **kwargs: Any) -> VerificationRun:
    """Create a run and send it to its queue; ``EnqueueError`` when the broker is down."""
    return jobs.enqueue(create_verification_run(project, user, **kwargs))


def solutions_of(run: VerificationRun):
    """The solutions the run verifies, in problem and solution order."""
    rows = SampledSolution.objects.filter(run=run.sampling_run)
    if run.per_problem:
        rows = rows.filter(index__lt=run.per_problem)
    return rows.order_by("problem_id", "index")


def _verified(run: VerificationRun, solutions: QuerySet[SampledSolution] | None = None) -> set[int]:
    """The solutions (of ``solutions``, by default all) whose verifications the run
    stored (committed together)."""
    rows = SolutionVerification.objects.filter(run=run, index=0)
    if solutions is not None:
        rows = rows.filter(solution__in=solutions.values("pk"))
    return set(rows.values_list("solution_id", flat=True))


def run_verification_job(run: VerificationRun, context: jobs.JobContext | None = None) -> dict:
    """Verify (or import) what the run has not stored yet, a solution at a time: the
    whole run, or one shard's solutions (``context.restrict``; the run's summary is then
    ``finish_verification_run``'s, once every shard is done)."""
    if is_import(run.completer):
        return _import_verifications(run, context)
    from scoring.completers import CompleterError
    from scoring.verifiers import Candidate, make_verifier

    solutions = solutions_of(run)
    if context:
        solutions = context.restrict(solutions)
    everything = list(solutions.values_list("pk", flat=True))
    total = len(everything)
    verified = _verified(run, solutions)
    todo = [pk for pk in everything if pk not in verified]
    done = total - len(todo)
    whole = context is None or context.shard is None
    if whole:
        _started(run, done, total, context)
    else:
        context.progress(done, total)
    completer = load_completer_for(run)
    extra = {"template": run.options["template"]} if "template" in run.options else {}
    verifier = make_verifier(run.verifier, completer, **extra)
    chunk = int(run.options.get("max_in_flight", 32))
    try:
        for start in range(0, len(todo), chunk):
            ids = todo[start : start + chunk]
            rows = list(
                SampledSolution.objects.filter(pk__in=ids)
                .select_related("problem")
                .order_by("problem_id", "index")
            )
            texts = _step_texts([row.trace_id for row in rows])
            candidates = [
                Candidate(
                    row.problem.text, "\n\n".join(texts[row.trace_id]), tuple(texts[row.trace_id])
                )
                for row in rows
            ]
            try:
                outputs = verifier.verify_all(candidates, run.v)
            except CompleterError as exc:
                raise jobs.JobRefused(str(exc)) from exc
            for row, verifications in zip(rows, outputs, strict=True):
                store_verifications(
                    run,
                    row.pk,
                    [(o.text, o.verdict, o.p_yes, o.p_no, o.tokens) for o in verifications],
                )
                done += 1
                if context:
                    context.progress(done, total)
    finally:
        if hasattr(completer, "close"):
            completer.close()
    if not whole:
        return {"solutions": done}
    return _finished(run, total)


def finish_verification_run(run: VerificationRun) -> dict:
    """The summary of a sharded run whose every solution is verified."""
    return _finished(run, run.progress_total)


def _started(run: VerificationRun, done: int, total: int, context) -> None:
    VerificationRun.objects.filter(pk=run.pk).update(
        summary={"resumed_at": done}, progress_total=total, progress_done=done
    )
    if context:
        context.progress(done, total)


def _finished(run: VerificationRun, solutions: int) -> dict:
    totals = run_totals(run)
    VerificationRun.objects.filter(pk=run.pk).update(
        verifications=totals["verifications"], tokens=totals["tokens"]
    )
    resumed_at = VerificationRun.objects.get(pk=run.pk).summary.get("resumed_at", 0)
    return {"solutions": solutions, "resumed_at": resumed_at, **totals}


def store_verifications(
    run: VerificationRun,
    solution_id: int,
    verifications: Sequence[tuple[str, bool | None, float | None, float | None, int]],
) -> None:
    """One solution's verifications ``(text, verdict, p_yes, p_no, tokens)`` in one
    transaction, replacing what the run held for it."""
    with transaction.atomic():
        SolutionVerification.objects.filter(run=run, solution_id=solution_id).delete()
        SolutionVerification.objects.bulk_create(
            SolutionVerification(
                run=run,
                solution_id=solution_id,
                index=k,
                text=text,
                verdict=verdict,
                p_yes=p_yes,
                p_no=p_no,
                tokens=tokens,
            )
            for k, (text, verdict, p_yes, p_no, tokens) in enumerate(verifications)
        )


def _import_verifications(run: VerificationRun, context: jobs.JobContext | None) -> dict:
    from scoring.formats.base import ImportFormatError
    from scoring.formats.sc_genrm import problem_dirs, read_verification_items, solution_files

    directory = import_dir(run.completer)
    by_key = dict(
        SampledSolution.objects.filter(run=run.sampling_run).values_list("trace__external_id", "pk")
    )
    try:
        if not directory.is_dir():
            raise ImportFormatError(str(directory), "is not a directory")
        work = []
        for i, folder in enumerate(problem_dirs(directory)):
            files = solution_files(folder)
            if run.per_problem:
                files = files[: run.per_problem]
            for j, path in enumerate(files):
                solution_id = by_key.get(f"{i}/{j}")
                if solution_id is None:
                    raise ImportFormatError(
                        str(path),
                        f"verifies sample {j} of problem {i}, which sampling run "
                        f"{run.sampling_run.name} does not hold",
                    )
                work.append((solution_id, path))
        total = len(work)
        verified = _verified(run)
        done = sum(1 for solution_id, _ in work if solution_id in verified)
        _started(run, done, total, context)
        for solution_id, path in work:
            if solution_id in verified:
                continue
            items = read_verification_items(path)[: run.v]
            store_verifications(
                run,
                solution_id,
                [(text, v.verdict, v.p_yes, v.p_no, 0) for text, v in items],
            )
            done += 1
            if context:
                context.progress(done, total)
    except ImportFormatError as exc:
        raise jobs.JobRefused(str(exc)) from exc
    return _finished(run, total)


def run_totals(run: VerificationRun) -> dict[str, int]:
    """Solutions verified, verifications and tokens stored so far."""
    rows = SolutionVerification.objects.filter(run=run)
    totals = rows.aggregate(
        verifications=Count("pk"),
        tokens=Sum("tokens"),
        solutions=Count("solution_id", distinct=True),
    )
    return {
        "solutions_verified": totals["solutions"] or 0,
        "verifications": totals["verifications"] or 0,
        "tokens": totals["tokens"] or 0,
    }
