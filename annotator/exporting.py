"""Exporting labelled traces in the formats trainers and benchmarks read.

Records stream out in chunks of traces read as plain rows (not model instances), with one
query each for the chunk's steps and labels, so memory stays flat and the query
count grows with chunks, not traces.

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

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from math import isnan
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from annotator.bulk import collector_slowed
from annotator.labelsets import label_set_named, verdicts_in_set
from annotator.models import Annotation, Project, ScoringRun, Step, StepScore, Trace, Verdict
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
    for chunk in traces.chunks(CHUNK_TRACES, read=_trace_rows):
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
        texts = _step_texts(in_chunk)
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
    created_at: datetime
    problem: str
    reference_answer: str


# JSON read as text and decoded with orjson: Django's JSONField decodes with json, and
# a JSON column was a tenth of an export's time.
_TRACE_COLUMNS = (
    *_TraceRow._fields[:7],
    "metadata_text",
    *_TraceRow._fields[8:-2],
    "problem__text",
    "problem__reference_answer",
)


def _trace_rows(page: QuerySet[Trace]) -> list[_TraceRow]:
    """A chunk of traces (``TraceQuerySet.chunks``) as rows, one query."""
    page = page.annotate(metadata_text=Cast("metadata", TextField()))
    return [
        _TraceRow(*row[:7], orjson.loads(row[7]), *row[8:])
        for row in page.values_list(*_TRACE_COLUMNS)
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
        created_at=trace.created_at.isoformat(),
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
