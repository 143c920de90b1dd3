"""Exporting labelled traces in the formats trainers and benchmarks read.

Records stream out in chunks of traces read as plain rows (not model instances), with one
query each for the chunk's steps and labels, so memory stays flat and the query
count grows with chunks, not traces. On PostgreSQL, outside a transaction, the next
chunk is read on a thread and connection of its own while this one is written out.

Which label a trace exports with (``labels``), as ``Verdict.resolve`` decides:

- ``human``: a reviewer's verdict if there is one (the adjudicated label, else the
  gold label of a gold question), else the annotators' latest labels when they agree
  on the first error; traces whose annotators disagree, or that nobody labelled, are
  left out of labelled formats.
- ``adjudicated``: only traces with a reviewer's verdict (adjudicated or gold).
- any other name: a label set's frozen labels (``annotator/labelsets.py``); traces
  outside the set count as unlabelled.

Steps after the first error have no judgement in first-error data, so the
formats that label every step (TRL, Math-Shepherd, PRM800K) end each trace at
its first wrong step: ``completions[:k+1]`` with ``labels = [True]*k + [False]``.
An all-correct trace keeps every step, all ``True``. The ``jsonl`` format keeps
every trace and every step, with the label (or null) beside them.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from math import isnan
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
from django.db import connection
from django.db.models import DateTimeField, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast

from annotator import database
from annotator.bulk import collector_slowed
from annotator.labelsets import label_set_named, verdicts_in_set
from annotator.models import (
    Annotation,
    LabelSet,
    Project,
    ScoringRun,
    Step,
    StepScore,
    Trace,
    Verdict,
)
from scoring.formats import REGISTRY, ExportTrace, write_parquet

EXPORT_FORMATS = ("processbench", "trl", "prm800k", "math-shepherd", "jsonl")
KEEPS_UNLABELLED = ("jsonl",)  # formats that write unlabelled traces, label null
LABEL_SOURCES = ("human", "adjudicated")
CHUNK_TRACES = 2000


@dataclass
class ExportSummary:
    records: int = 0
    unlabelled: int = 0
    disagreements: int = 0
    kept_unlabelled: bool = False  # True: unlabelled traces were written, label null

    def __str__(self) -> str:
        if self.kept_unlabelled:
            return (
                f"{self.records} records written, {self.unlabelled} of them unlabelled and "
                f"{self.disagreements} with unresolved disagreements (first_error_step null)"
            )
        return (
            f"{self.records} records written; left out {self.unlabelled} unlabelled and "
            f"{self.disagreements} unresolved disagreements"
        )


def iter_export(
    project: Project,
    fmt: str,
    *,
    split: str | None = None,
    labels: str = "human",
    summary: ExportSummary | None = None,
    score_runs: Sequence[ScoringRun] = (),
) -> Iterator[dict[str, Any]]:
    """Yield one export record per trace (or none for traces without a usable label).
    With ``score_runs`` (``jsonl`` only) each record gets ``"step_scores": {run name:
    [score per step]}`` for the runs that scored it, read one query per chunk."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    # Any other name is a label set (annotator/labelsets.py): its labels, frozen.
    label_set = None if labels in LABEL_SOURCES else label_set_named(project, labels)
    if score_runs and fmt != "jsonl":
        raise ValueError("step scores are exported in the jsonl format only")
    summary = summary if summary is not None else ExportSummary()
    summary.kept_unlabelled = fmt in KEEPS_UNLABELLED
    to_record = _RECORD_BUILDERS[fmt]
    traces = Trace.objects.filter(project=project).selected(split=split or "")
    read = partial(_trace_rows, with_time=fmt in WRITES_CREATED_AT)
    with _read_ahead(_chunks(traces, read, labels, label_set, score_runs)) as chunks:
        for chunk, verdicts, texts, scores in chunks:
            yield from _records(chunk, verdicts, texts, scores, to_record, summary, score_runs)


class _ChunkData(NamedTuple):
    """What a chunk of traces exports from: its rows, their verdicts, step texts and
    (with ``score_runs``) step scores."""

    traces: list[_TraceRow]
    verdicts: dict[int, Verdict]
    texts: dict[int, list[str]]
    scores: dict[int, dict[str, list]]


def _chunks(
    traces: QuerySet[Trace],
    read: Callable[[QuerySet[Trace]], list[_TraceRow]],
    labels: str,
    label_set: LabelSet | None,
    score_runs: Sequence[ScoringRun],
) -> Generator[_ChunkData, None, None]:
    """The data of ``traces``, ``CHUNK_TRACES`` at a time: four queries a chunk at most."""
    for chunk in traces.chunks(CHUNK_TRACES, read=read):
        ids = [row.id for row in chunk]
        in_chunk = _of_chunk(traces, ids)
        scores = _step_scores(score_runs, in_chunk) if score_runs else {}
        if label_set:
            from_set = verdicts_in_set(label_set, [Trace(pk=pk) for pk in ids])
            verdicts = {pk: from_set.get(pk, Verdict()) for pk in ids}
        else:
            verdicts = Annotation.objects.filter(in_chunk).verdicts(
                reviewed_only=labels == "adjudicated"
            )
        yield _ChunkData(chunk, verdicts, _step_texts(in_chunk), scores)


@contextmanager
def _read_ahead(
    chunks: Generator[_ChunkData, None, None],
) -> Iterator[Iterator[_ChunkData]]:
    """``chunks``, the next one read by a thread of its own, on a connection of its own,
    while the caller writes out the last: the database works on one chunk while this
    process builds the records of another (an export's time was the two one after the
    other, each about half). At most one chunk waits, so memory stays flat.

    Only where the reads may leave this connection: on PostgreSQL, and outside a
    transaction (another connection would not see its rows); otherwise ``chunks`` is
    read here. An error in the thread is raised here, in its place; a caller that stops
    early (a download cancelled) stops the thread after the chunk it is on."""
    if not database.has_concurrent_readers() or connection.in_atomic_block:
        yield chunks
        return
    ahead: queue.Queue[tuple[_ChunkData | None, BaseException | None]] = queue.Queue(1)
    stop = threading.Event()

    def read() -> None:
        try:
            for chunk in chunks:
                ahead.put((chunk, None))
                if stop.is_set():
                    return
            ahead.put((None, None))
        except BaseException as exc:  # raised in the caller's thread
            ahead.put((None, exc))
        finally:
            chunks.close()
            connection.close()  # this thread's own

    def taken() -> Iterator[_ChunkData]:
        while True:
            chunk, error = ahead.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk

    thread = threading.Thread(target=read, name="export-read-ahead", daemon=True)
    thread.start()
    try:
        yield taken()
    finally:
        stop.set()
        while thread.is_alive():  # take what it put, so that it sees the stop
            with suppress(queue.Empty):
                ahead.get(timeout=0.05)
        thread.join()


def _records(
    chunk: list[_TraceRow],
    verdicts: dict[int, Verdict],
    texts: dict[int, list[str]],
    scores: dict[int, dict[str, list]],
    to_record: Callable[[_TraceRow, list[str], Verdict | None], dict[str, Any]],
    summary: ExportSummary,
    score_runs: Sequence[ScoringRun],
) -> Iterator[dict[str, Any]]:
    """A chunk's export records; counts what it leaves out in ``summary``."""
    for row in chunk:
        verdict = verdicts.get(row.id, Verdict())
        if verdict.disagreement:
            summary.disagreements += 1
        elif not verdict.is_labelled:
            summary.unlabelled += 1
        if not verdict.is_labelled and not summary.kept_unlabelled:
            continue
        summary.records += 1
        record = to_record(row, texts[row.id], verdict if verdict.is_labelled else None)
        if score_runs:
            record["step_scores"] = scores.get(row.id, {})
        yield record


def _of_chunk(traces: QuerySet[Trace], ids: list[int]) -> Q:
    """The rows (steps, labels, scores) of a chunk of ``traces``, ``ids`` in id order.

    The chunk is every selected trace with an id in its range (keyset order), so a
    subquery over that range names it without a 2000-item IN list, slow for Django to
    build. When no other trace has an id in the range (one project imported at a time,
    no split filter: the usual case) the range alone names it, and the rows are read
    straight off their ``(trace, ...)`` indexes, in order: the subquery's join and sort
    took twice as long as reading the rows (a quarter of a 100k-trace export)."""
    if ids[-1] - ids[0] + 1 == len(ids):
        return Q(trace_id__gte=ids[0], trace_id__lte=ids[-1])
    return Q(trace_id__in=traces.filter(id__gte=ids[0], id__lte=ids[-1]).values("id"))


class _TraceRow(NamedTuple):
    """The columns an export reads of a trace and its problem, as plain tuples: building
    model instances (each trace, its problem, its annotations) cost more than the rest
    of an export together (bench/import_export.py)."""

    id: int
    external_id: str
    generator: str
    split: str
    source: str
    final_answer: str
    final_answer_correct: bool | None
    metadata: dict
    is_gold: bool
    created_at: datetime | None  # read only for the formats that write it
    problem: str
    reference_answer: str


# The formats whose records carry the trace's creation time (PRM800K's ``timestamp``).
# The others do not read it: reading and formatting it took a tenth of this process's
# time in an export.
WRITES_CREATED_AT = ("prm800k",)

# JSON read as text and decoded with orjson: Django's JSONField decodes with json, and
# a JSON column was a tenth of an export's time.
_TRACE_COLUMNS = (
    *_TraceRow._fields[:7],
    "metadata_text",
    *_TraceRow._fields[8:-2],
    "problem__text",
    "problem__reference_answer",
)
_UNTIMED_COLUMNS = tuple("no_time" if c == "created_at" else c for c in _TRACE_COLUMNS)


def _trace_rows(page: QuerySet[Trace], *, with_time: bool) -> list[_TraceRow]:
    """A chunk of traces (``TraceQuerySet.chunks``) as rows, one query; ``created_at``
    None unless ``with_time``."""
    page = page.annotate(
        metadata_text=Cast("metadata", TextField()),
        no_time=Value(None, output_field=DateTimeField()),
    )
    return [
        _TraceRow(*row[:7], orjson.loads(row[7]), *row[8:])
        for row in page.values_list(*(_TRACE_COLUMNS if with_time else _UNTIMED_COLUMNS))
    ]


def _step_texts(in_chunk: Q) -> dict[int, list[str]]:
    """``{trace id: step texts in order}`` for a chunk, in one query."""
    texts: dict[int, list[str]] = defaultdict(list)
    for trace_id, text in (
        Step.objects.filter(in_chunk).order_by("trace_id", "index").values_list("trace_id", "text")
    ):
        texts[trace_id].append(text)
    return texts


def _step_scores(runs: Sequence[ScoringRun], in_chunk: Q) -> dict[int, dict[str, list]]:
    """``{trace id: {run name: scores}}`` for a chunk of traces, in one query."""
    names = {run.pk: run.name for run in runs}
    found: dict[int, dict[str, list]] = defaultdict(dict)
    for run_id, trace_id, score in (
        StepScore.objects.filter(in_chunk, run__in=list(names))
        .order_by("trace_id", "run_id", "step_index")
        .values_list("run_id", "trace_id", "score")
    ):
        found[trace_id].setdefault(names[run_id], []).append(None if isnan(score) else score)
    return found


def score_runs_named(project: Project, spec: str) -> list[ScoringRun]:
    """The runs ``--scores`` names: ``all`` (the project's finished runs) or a comma list."""
    runs = ScoringRun.objects.filter(project=project).order_by("id")
    if spec == "all":
        return list(runs.filter(status="done"))
    names = [name.strip() for name in spec.split(",") if name.strip()]
    found = {run.name: run for run in runs.filter(name__in=names)}
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"no run named {', '.join(map(repr, missing))} in {project.slug}")
    return [found[name] for name in names]


def _export_trace(trace: _TraceRow, steps: list[str]) -> ExportTrace:
    """A stored trace as the format writers take it."""
    return ExportTrace(
        external_id=trace.external_id,
        problem=trace.problem,
        steps=steps,
        source=trace.source,
        reference_answer=trace.reference_answer,
        generator=trace.generator,
        split=trace.split,
        final_answer=trace.final_answer,
        final_answer_correct=trace.final_answer_correct,
        metadata=trace.metadata,
        is_gold=trace.is_gold,
        created_at="" if trace.created_at is None else trace.created_at.isoformat(),
    )


def _record_builder(fmt: str) -> Callable[[_TraceRow, list[str], Verdict | None], dict[str, Any]]:
    write = REGISTRY[fmt].write

    def build(trace: _TraceRow, steps: list[str], label: Verdict | None) -> dict[str, Any]:
        if label is None:  # only the formats that keep unlabelled traces get here
            return write(_export_trace(trace, steps), None, None)
        return write(_export_trace(trace, steps), label.first_error_step, label.step_ratings)

    return build


_RECORD_BUILDERS = {fmt: _record_builder(fmt) for fmt in EXPORT_FORMATS}


def iter_jsonl_lines(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield orjson.dumps(record) + b"\n"


def write_export(
    project: Project,
    fmt: str,
    out: str | Path | IO[bytes],
    *,
    split: str | None = None,
    labels: str = "human",
    parquet: bool | None = None,
    score_runs: Sequence[ScoringRun] = (),
) -> ExportSummary:
    """Write an export to a path (``.parquet`` suffix means parquet) or a binary stream."""
    summary = ExportSummary()
    if parquet is None:
        parquet = isinstance(out, str | Path) and str(out).endswith(".parquet")
    if parquet and score_runs:
        raise ValueError("step scores are exported as JSONL, not parquet")
    records = iter_export(
        project, fmt, split=split, labels=labels, summary=summary, score_runs=score_runs
    )
    with collector_slowed():
        if parquet:
            write_parquet(records, out, fmt, rows_per_group=CHUNK_TRACES)
        elif isinstance(out, str | Path):
            with open(out, "wb") as fh:
                fh.writelines(iter_jsonl_lines(records))
        else:
            out.writelines(iter_jsonl_lines(records))
    return summary
