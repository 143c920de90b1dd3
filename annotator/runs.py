"""Scoring runs: scoring a run's traces (``jobs.selected_traces``) chunk by chunk on a
worker, storing the scores, importing score files, and the run's figures against the
humans.

A run streams its traces from the database shortest first (by step count, then id:
``TraceQuerySet.chunks``' keyset, so memory stays flat and similar lengths batch
together), scores each chunk with ``scoring.score_traces`` (which asks the job's
cancel check within the chunk) and commits the chunk's ``TraceScore`` and
``StepScore`` rows in one transaction. A chunk first deletes whatever the run
stored for its traces, so writing a chunk twice (a worker that lost its claim)
replaces rather than duplicates; a run taken up again skips the traces it stored.
A run split into shards (``annotator/shards.py``) does the same over each shard's
traces on whichever worker claims it, and ``finish_run`` writes its summary once the
last one is done.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef

from annotator import database, jobs, shards
from annotator.bulk import copy_rows
from annotator.jobs import RunError, clean_selection, selected_traces
from annotator.models import (
    Annotation,
    Project,
    RunSource,
    ScoreImportJob,
    Scorer,
    ScoringRun,
    StepScore,
    Trace,
    TraceScore,
    read_with_steps,
)
from scoring import metrics
from scoring.engine import CHECK_EVERY_SECONDS
from scoring.formats import ImportFormatError, iter_scores
from scoring.types import StepScores
from scoring.types import Trace as ScoringTrace

log = logging.getLogger(__name__)


# -- starting -------------------------------------------------------------------------------


def default_run_name(project: Project, scorer: Scorer) -> str:
    taken = set(
        ScoringRun.objects.filter(project=project, name__startswith=scorer.name).values_list(
            "name", flat=True
        )
    )
    if scorer.name not in taken:
        return scorer.name
    n = 2
    while f"{scorer.name}-{n}" in taken:
        n += 1
    return f"{scorer.name}-{n}"


def create_run(
    project: Project,
    scorer: Scorer,
    user,
    *,
    selection: dict[str, Any] | None = None,
    name: str = "",
    shard_traces: int | None = None,
) -> ScoringRun:
    """A queued run row (not yet sent to a worker); ``RunError`` for a scorer of
    another project (trained on its labels), a name taken, or an empty selection.
    ``shard_traces`` (``RUN_SHARD_TRACES`` when None; 0: one job) splits the run into
    shards of that many traces, which several workers take (``annotator/shards.py``)."""
    if not scorer.is_usable_in(project):
        raise RunError(f"the scorer {scorer.name!r} belongs to another project")
    selection = clean_selection(selection or {})
    name = name or default_run_name(project, scorer)
    if ScoringRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a run named {name!r}")
    if not selected_traces(project, selection).exists():
        raise RunError("the selection holds no traces")
    shard_traces = shards.check_size(shard_traces)
    with transaction.atomic():  # the run with its shards, or nothing
        run = ScoringRun.objects.create(
            project=project,
            name=name,
            scorer=scorer,
            selection=selection,
            created_by=user,
            queue=scorer.queue,
            threshold=scorer.threshold,
            max_attempts=settings.JOB_MAX_ATTEMPTS,
            provenance={
                "adapter": scorer.adapter,
                "model": scorer.model,
                "revision": scorer.revision,
                "options": scorer.options,
                "scorer": scorer.name,
            },
        )
        if shard_traces:
            shards.plan(run, selected_traces(project, selection), shard_traces)
    return run


def start_run(project: Project, scorer: Scorer, user, **kwargs: Any) -> ScoringRun:
    """Create a run and send it to its queue; ``EnqueueError`` when the broker is down."""
    return jobs.enqueue(create_run(project, scorer, user, **kwargs))


# -- the work -------------------------------------------------------------------------------


def run_scoring_job(
    run: ScoringRun,
    context: jobs.JobContext | None = None,
    *,
    check_every: float = CHECK_EVERY_SECONDS,
) -> dict[str, Any]:
    """Score what the run has not stored yet, chunk by chunk: the whole run, or one
    shard's traces (``context.restrict``; the run's summary is then ``finish_run``'s,
    once every shard is done). ``context`` is None when the run executes in-process
    (``score_traces --now``); otherwise its cancel check is asked between chunks and,
    every ``check_every`` seconds, within one (a chunk of a slow scorer runs for
    minutes)."""
    from annotator.scorers import load_scorer
    from scoring.engine import DEFAULT_BATCH_TOKENS, score_traces

    if run.scorer is None:
        raise jobs.JobRefused("an imported run has nothing to score")
    everything = selected_traces(run.project, run.selection)
    if context:
        everything = context.restrict(everything)
    total = everything.count()
    todo = everything.exclude(Exists(TraceScore.objects.filter(run=run, trace=OuterRef("pk"))))
    done = total - todo.count()
    whole = context is None or context.shard is None
    if whole:
        ScoringRun.objects.filter(pk=run.pk).update(
            summary={"resumed_at": done}, progress_total=total, progress_done=done
        )
    if context:
        context.progress(done, total)
    provenance = run.provenance
    try:
        adapter = load_scorer(
            provenance["adapter"],
            provenance["model"],
            provenance["revision"],
            provenance["options"],
        )
    except (OSError, ValueError) as exc:  # a wrong path or hub id, a bad option
        what = provenance["model"] or provenance["adapter"]
        raise jobs.JobRefused(f"could not load {what}: {exc}") from exc
    batch_tokens = int(provenance["options"].get("batch_tokens", DEFAULT_BATCH_TOKENS))
    shortest_first = todo.select_related("problem").chunks(
        settings.SCORING_CHUNK_TRACES, read=read_with_steps, by=("num_steps", "id")
    )
    for chunk in shortest_first:
        inputs = [
            ScoringTrace(
                problem=trace.problem.text,
                steps=tuple(trace.step_texts),
                reference_answer=trace.problem.reference_answer or None,
                id=str(trace.pk),
                split=trace.split,
            )
            for trace in chunk
        ]
        started = time.perf_counter()
        check = context.check if context else None
        results = list(
            score_traces(adapter, inputs, batch_tokens, check=check, check_every=check_every)
        )
        seconds = time.perf_counter() - started
        store_scores(run, results)
        tokens = sum(r.n_tokens for r in results)
        ScoringRun.objects.filter(pk=run.pk).update(
            tokens=F("tokens") + tokens, scoring_seconds=F("scoring_seconds") + seconds
        )
        done += len(chunk)
        if context:
            context.progress(done, total)
    if not whole:
        return {"traces": done}
    run.progress_done = done
    return finish_run(run)


def finish_run(run: ScoringRun) -> dict[str, Any]:
    """The summary of a run whose every trace is scored (``run.progress_done`` of them),
    its dashboard warmed."""
    resumed_at = ScoringRun.objects.get(pk=run.pk).summary.get("resumed_at", 0)
    _warm_dashboard(run, run.progress_done)
    return {**run_summary(run), "resumed_at": resumed_at}


def _warm_dashboard(run: ScoringRun, done: int) -> None:
    """Fill the dashboard's cache for the run about to be marked done with ``done``
    traces, so its first visit is fast. Best effort: the scores are stored, and a
    failure here (the cache or the database busy) only leaves the first visit slow."""
    from annotator import dashboards

    if not dashboards.in_sql():  # the Python path computes on a first visit
        return
    finished = ScoringRun.objects.get(pk=run.pk)
    finished.progress_done = done
    try:
        dashboards.warm(finished)
    except Exception:
        log.warning("could not warm the dashboard of run %s", run.pk, exc_info=True)


# -- storing --------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON that PostgreSQL's jsonb accepts: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def store_scores(run: ScoringRun, results: Sequence[StepScores]) -> None:
    """Write one chunk's scores in one transaction (``trace_id`` of each result is the
    trace's primary key). Traces the run stored before (a chunk written twice by a
    worker that lost its claim) are replaced, never doubled: the (run, trace) unique
    index refuses their ``TraceScore`` rows, and the chunk is written again after
    deleting them, so the common case costs no lookup."""
    if not results:
        return
    trace_ids = [int(r.trace_id) for r in results]
    trace_rows = []
    step_rows: list[tuple[int, int, int, float]] = []  # without COPY (SQLite)
    step_text: list[str] = []  # COPY's text lines (PostgreSQL)
    copy = database.has_copy()
    for trace_id, result in zip(trace_ids, results, strict=True):
        scores = [float(s) for s in result.scores]
        if copy:
            # Each score spelt once, for its step's row and for the trace's array (an
            # array literal as text: psycopg's list dumper, a Python call per element,
            # made storing a third slower).
            spelt = [repr(s) for s in scores]
            step_scores: str | list[float] = "{" + ",".join(spelt) + "}"
            step_text.extend(
                f"{run.pk}\t{trace_id}\t{index}\t{text}\n" for index, text in enumerate(spelt)
            )
        else:
            step_scores = scores
            step_rows.extend((run.pk, trace_id, index, score) for index, score in enumerate(scores))
        finite = [s for s in scores if not math.isnan(s)]
        extras = dict(result.details)
        if result.raw is not None:
            extras["raw"] = list(result.raw)
        trace_rows.append(
            (
                run.pk,
                trace_id,
                min(finite) if finite else None,
                scores[-1] if scores and not math.isnan(scores[-1]) else None,
                metrics.aggregate(finite, "mean"),
                log_product(finite),
                metrics.first_error(scores, run.threshold) if scores else -1,
                result.n_tokens,
                json.dumps(_finite(extras)),
                step_scores,
            )
        )
    with transaction.atomic():
        if database.has_transaction_settings():
            # A crash may lose the last chunks' commits (never part of one): their
            # traces then have no TraceScore, and the resumed run scores them again.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        try:
            with transaction.atomic():
                copy_rows(TraceScore, _TRACE_SCORE_COLUMNS, trace_rows)
        except IntegrityError:  # stored before: replace those traces' rows
            TraceScore.objects.filter(run=run, trace_id__in=trace_ids).delete()
            StepScore.objects.filter(run=run, trace_id__in=trace_ids).delete()
            copy_rows(TraceScore, _TRACE_SCORE_COLUMNS, trace_rows)
        if copy:
            _copy_step_score_text("".join(step_text))
        else:
            copy_rows(StepScore, ("run_id", "trace_id", "step_index", "score"), step_rows)


def log_product(finite: Sequence[float]) -> float | None:
    """The log of ``metrics.aggregate(finite, "product")``, as ``TraceScore.log_product``
    keeps it: a sum of logs never underflows as a product of many small scores does.
    -inf when a score is 0, NaN when there is none, None (unknown) when one is negative.

    >>> log_product([0.5, 0.5]) == math.log(0.25), log_product([0.5, 0.0]), log_product([])
    (True, -inf, nan)
    """
    if not finite:
        return math.nan
    if any(s < 0 for s in finite):
        return None
    if any(s == 0 for s in finite):
        return -math.inf
    return math.fsum(math.log(s) for s in finite)


def _copy_step_score_text(text: str) -> None:
    """Step scores are numbers only, so on PostgreSQL they go to ``COPY`` as one block
    of text per chunk (``run\ttrace\tstep\tscore`` lines; ``nan`` is NaN to
    PostgreSQL), several times faster than a Python call per row."""
    table = connection.ops.quote_name(StepScore._meta.db_table)
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {table} (run_id, trace_id, step_index, score) FROM STDIN"
        ) as copy,
    ):
        copy.write(text)


_TRACE_SCORE_COLUMNS = (
    "run_id",
    "trace_id",
    "min_score",
    "last_score",
    "mean_score",
    "log_product",
    "predicted_first_error",
    "n_tokens",
    "extras",
    "step_scores",
)


# -- reading --------------------------------------------------------------------------------


def scores_by_trace(runs: Iterable[ScoringRun], trace: Trace) -> dict[int, list[float]]:
    """``{run id: step scores}`` of one trace (runs that scored it)."""
    found: dict[int, list[float]] = defaultdict(list)
    for run_id, score in (
        StepScore.objects.filter(run__in=list(runs), trace=trace)
        .order_by("run_id", "step_index")
        .values_list("run_id", "score")
    ):
        found[run_id].append(score)
    return dict(found)


@dataclass(frozen=True)
class SplitRow:
    split: str
    result: metrics.ProcessBenchResult


def processbench_rows(run: ScoringRun) -> list[SplitRow]:
    """The ProcessBench table of the run at its threshold against the human verdicts
    (traces with a verdict only), per split plus the average. Reads one row per
    trace (``TraceScore.predicted_first_error``), never the steps."""
    predicted = dict(
        TraceScore.objects.filter(run=run).values_list("trace_id", "predicted_first_error")
    )
    if not predicted:
        return []
    verdicts = Annotation.objects.filter(
        trace__in=Trace.objects.filter(trace_scores__run=run)
    ).verdicts()
    splits = dict(Trace.objects.filter(trace_scores__run=run).values_list("id", "split"))
    preds: dict[str, list[int]] = defaultdict(list)
    labels: dict[str, list[int]] = defaultdict(list)
    for trace_id, verdict in verdicts.items():
        if verdict.first_error_step is None or predicted.get(trace_id) is None:
            continue
        split = splits[trace_id] or "(no split)"
        preds[split].append(predicted[trace_id])
        labels[split].append(verdict.first_error_step)
    rows = [
        SplitRow(split, metrics.processbench(preds[split], labels[split]))
        for split in sorted(preds)
    ]
    if len(rows) > 1:
        average = metrics.ProcessBenchResult(
            acc_err=sum(r.result.acc_err for r in rows) / len(rows),
            acc_cor=sum(r.result.acc_cor for r in rows) / len(rows),
            f1=sum(r.result.f1 for r in rows) / len(rows),
            n_err=sum(r.result.n_err for r in rows),
            n_cor=sum(r.result.n_cor for r in rows),
        )
        rows.append(SplitRow("average", average))
    return rows


def run_summary(run: ScoringRun) -> dict[str, Any]:
    traces = TraceScore.objects.filter(run=run).count()
    steps = StepScore.objects.filter(run=run).count()
    return {"traces": traces, "steps": steps}


# -- importing score files ------------------------------------------------------------------

# Scores stored per statement, and records read between progress reports.
SCORE_IMPORT_CHUNK = 2000


def import_scores(
    project: Project,
    fh: IO[bytes],
    file_name: str,
    *,
    name: str,
    user,
    progress: Callable[[int, int | None], None] | None = None,
) -> ScoringRun:
    """A run with provenance "imported" from the JSONL that ``python -m scoring score``
    writes (``{"id", "scores", "adapter"?, "model"?, ...}`` per line; the minimal form is
    ``{"id": ..., "scores": [...]}``), read by the one score-file reader
    (``scoring.formats.scores.iter_scores``, with its guards). Records match traces by
    external id. Any bad line (refused by the reader, an unknown id, a wrong step
    count) refuses the whole file with its line named, and nothing is written.
    ``progress(records read, total)`` is called every ``SCORE_IMPORT_CHUNK`` records
    while reading and once per chunk stored (a job's, which raises there to stop)."""
    _refuse_taken_name(project, name)
    report = progress or (lambda done, total: None)
    records: list[tuple[int, StepScores]] = []
    try:
        for record in iter_scores(fh, file_name):
            records.append(record)
            if len(records) % SCORE_IMPORT_CHUNK == 0:
                report(len(records), None)
    except ImportFormatError as exc:
        raise RunError(str(exc)) from None
    if not records:
        raise RunError(f"{file_name}: no score records")
    known = _traces_by_external_id(project, [item.trace_id for _, item in records])
    parsed: list[StepScores] = []
    for line_no, item in records:
        where = f"{file_name}, line {line_no}"
        if item.trace_id not in known:
            raise RunError(f"{where}: no trace in this project has id {item.trace_id!r}")
        trace_id, num_steps = known[item.trace_id]
        if len(item.scores) != num_steps:
            raise RunError(
                f"{where}: {len(item.scores)} scores for trace {item.trace_id!r},"
                f" which has {num_steps} steps"
            )
        parsed.append(replace(item, trace_id=str(trace_id)))
    with transaction.atomic():
        run = ScoringRun.objects.create(
            project=project,
            name=name,
            source=RunSource.IMPORTED,
            created_by=user,
            status="done",
            progress_done=len(parsed),
            progress_total=len(parsed),
            provenance={
                "file": file_name,
                "adapter": ", ".join(sorted({i.adapter for i in parsed if i.adapter})),
                "model": ", ".join(sorted({i.model for i in parsed if i.model})),
            },
        )
        for start in range(0, len(parsed), SCORE_IMPORT_CHUNK):
            store_scores(run, parsed[start : start + SCORE_IMPORT_CHUNK])
            report(len(records), len(records))
        ScoringRun.objects.filter(pk=run.pk).update(summary=run_summary(run))
    run.refresh_from_db()
    return run


def _refuse_taken_name(project: Project, name: str) -> None:
    if ScoringRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a run named {name!r}", field="name")


def start_score_import(
    project: Project, user, upload: UploadedFile, *, name: str
) -> ScoreImportJob:
    """Save the upload to storage and queue its import as the run ``name``; ``RunError``
    when the project has a run of that name, ``EnqueueError`` (the job marked failed,
    the upload deleted) when the broker is down."""
    _refuse_taken_name(project, name)
    kept = ScoreImportJob.keep(upload)
    job = ScoreImportJob.objects.create(
        project=project, name=name, created_by=user, max_attempts=settings.JOB_MAX_ATTEMPTS, **kept
    )
    return jobs.enqueue(job)


def run_score_import_job(job: ScoreImportJob, context: jobs.JobContext) -> dict[str, Any]:
    """The work of a score import: ``import_scores`` on the stored file, all or nothing.
    A job taken up again after it stored its run (its worker died before it could
    finish the job) keeps that run."""
    if job.run_id is not None:
        return {**job.run.summary, "run": job.run_id}
    with default_storage.open(job.upload, "rb") as fh, transaction.atomic():
        try:
            run = import_scores(
                job.project,
                fh,
                job.file_name,
                name=job.name,
                user=job.created_by,
                progress=context.progress,
            )
        except RunError as exc:
            raise jobs.JobRefused(f"{exc}. Nothing was imported.") from exc
        # In the run's transaction: a worker that dies once it commits leaves the run
        # found here, not a second import refused for its taken name.
        ScoreImportJob.objects.filter(pk=job.pk).update(run=run)
    return {**run.summary, "run": run.pk}


def _traces_by_external_id(project: Project, ids: list[str]) -> dict[str, tuple[int, int]]:
    """``{external id: (trace id, step count)}``; an id several sources share is ambiguous
    and matches nothing (the error then names it)."""
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for start in range(0, len(ids), 5000):
        for ext, pk, n in Trace.objects.filter(
            project=project, external_id__in=ids[start : start + 5000]
        ).values_list("external_id", "id", "num_steps"):
            found[ext].append((pk, n))
    return {ext: rows[0] for ext, rows in found.items() if len(rows) == 1}
