"""Exporting labelled traces in the formats trainers and benchmarks read.

Records stream out in chunks of traces (keyset pagination on the id), with one
query each for the chunk's steps and labels, so memory stays flat and the query
count grows with chunks, not traces.

Which label a trace exports with (``labels``):

- ``human``: a reviewer's verdict if there is one (the adjudicated label, else the
  gold label of a gold question), else the annotators' latest labels when they agree
  on the first error; traces whose annotators disagree, or that nobody labelled, are
  left out of labelled formats.
- ``adjudicated``: only traces with a reviewer's verdict (adjudicated or gold).

Steps after the first error have no judgement in first-error data, so the
formats that label every step (TRL, Math-Shepherd, PRM800K) end each trace at
its first wrong step: ``completions[:k+1]`` with ``labels = [True]*k + [False]``.
An all-correct trace keeps every step, all ``True``. The ``jsonl`` format keeps
every trace and every step, with the label (or null) beside them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from annotator.models import Annotation, AnnotationKind, Project, Step, Trace
from scoring.steps import SHEPHERD_TAG

EXPORT_FORMATS = ("processbench", "trl", "prm800k", "math-shepherd", "jsonl")
KEEPS_UNLABELLED = ("jsonl",)  # formats that write unlabelled traces, label null
LABEL_SOURCES = ("human", "adjudicated")
CHUNK_TRACES = 2000


@dataclass(frozen=True)
class ResolvedLabel:
    first_error_step: int
    step_ratings: list[int | None] | None


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


def resolve_label(
    annotations: list[Annotation], labels: str = "human"
) -> ResolvedLabel | None | str:
    """The label one trace exports with, ``None`` when it has none, or ``"disagreement"``."""
    for kind in (AnnotationKind.ADJUDICATION, AnnotationKind.GOLD):
        verdicts = [a for a in annotations if a.kind == kind and a.first_error_step is not None]
        if verdicts:
            chosen = max(verdicts, key=lambda a: a.id)
            return ResolvedLabel(chosen.first_error_step, chosen.step_ratings)
    if labels == "adjudicated":
        return None
    votes = [
        a for a in annotations if a.kind == AnnotationKind.LABEL and a.first_error_step is not None
    ]
    if not votes:
        return None
    if len({a.first_error_step for a in votes}) > 1:
        return "disagreement"
    first = min(votes, key=lambda a: a.id)
    return ResolvedLabel(first.first_error_step, first.step_ratings)


def _trace_chunks(project: Project, split: str | None) -> Iterator[list[Trace]]:
    traces = Trace.objects.filter(project=project).select_related("problem").order_by("id")
    if split:
        traces = traces.filter(split=split)
    last_id = 0
    while True:
        chunk = list(traces.filter(id__gt=last_id)[:CHUNK_TRACES])
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1].id


def iter_export(
    project: Project,
    fmt: str,
    *,
    split: str | None = None,
    labels: str = "human",
    summary: ExportSummary | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one export record per trace (or none for traces without a usable label)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    if labels not in LABEL_SOURCES:
        raise ValueError(
            f"unknown label source {labels!r}; choose one of {', '.join(LABEL_SOURCES)}"
        )
    summary = summary if summary is not None else ExportSummary()
    summary.kept_unlabelled = fmt in KEEPS_UNLABELLED
    to_record = _RECORD_BUILDERS[fmt]
    for chunk in _trace_chunks(project, split):
        ids = [t.id for t in chunk]
        steps: dict[int, list[str]] = defaultdict(list)
        for trace_id, text in (
            Step.objects.filter(trace_id__in=ids)
            .order_by("trace_id", "index")
            .values_list("trace_id", "text")
        ):
            steps[trace_id].append(text)
        annotations: dict[int, list[Annotation]] = defaultdict(list)
        for annotation in Annotation.objects.filter(trace_id__in=ids, is_latest=True).only(
            "id", "trace_id", "kind", "first_error_step", "step_ratings"
        ):
            annotations[annotation.trace_id].append(annotation)
        for trace in chunk:
            label = resolve_label(annotations[trace.id], labels)
            if label == "disagreement":
                summary.disagreements += 1
                label = None
            elif label is None:
                summary.unlabelled += 1
            if label is None and not summary.kept_unlabelled:
                continue
            summary.records += 1
            yield to_record(trace, steps[trace.id], label)


def _truncated(steps: list[str], label: ResolvedLabel) -> tuple[list[str], list[bool]]:
    if label.first_error_step == -1:
        return steps, [True] * len(steps)
    k = label.first_error_step
    return steps[: k + 1], [True] * k + [False]


def _processbench(trace: Trace, steps: list[str], label: ResolvedLabel) -> dict[str, Any]:
    return {
        "id": trace.external_id,
        "generator": trace.generator,
        "problem": trace.problem.text,
        "steps": steps,
        "final_answer_correct": trace.final_answer_correct,
        "label": label.first_error_step,
    }


def _trl(trace: Trace, steps: list[str], label: ResolvedLabel) -> dict[str, Any]:
    completions, flags = _truncated(steps, label)
    return {"prompt": trace.problem.text, "completions": completions, "labels": flags}


def _math_shepherd(trace: Trace, steps: list[str], label: ResolvedLabel) -> dict[str, Any]:
    completions, flags = _truncated(steps, label)
    body = [f"Step {i}: {step} {SHEPHERD_TAG}\n" for i, step in enumerate(completions, start=1)]
    marks = ["+" if ok else "-" for ok in flags]
    question = trace.problem.text.strip()
    return {
        "input": f"{question} " + "".join(body),
        "label": f"{question} "
        + "".join(b[: -len(SHEPHERD_TAG) - 1] + m + "\n" for b, m in zip(body, marks, strict=True)),
        "task": trace.split or "",
    }


def _prm800k(trace: Trace, steps: list[str], label: ResolvedLabel) -> dict[str, Any]:
    if label.first_error_step == -1:
        judged = len(steps)
        finish_reason = "solution"
    else:
        judged = label.first_error_step + 1
        finish_reason = "found_error"
    ratings = label.step_ratings or []
    label_steps = []
    for i, step in enumerate(steps[:judged]):
        rating = ratings[i] if i < len(ratings) and ratings[i] is not None else None
        if rating is None:
            rating = -1 if i == label.first_error_step else 1
        label_steps.append(
            {
                "completions": [{"text": step, "rating": rating, "flagged": False}],
                "human_completion": None,
                "chosen_completion": None if rating == -1 else 0,
            }
        )
    return {
        "labeler": "stepwise",
        "timestamp": trace.created_at.isoformat(),
        "generation": None,
        "is_quality_control_question": trace.is_gold,
        "is_initial_screening_question": False,
        "question": {
            "problem": trace.problem.text,
            "ground_truth_answer": trace.problem.reference_answer or None,
            "pre_generated_steps": steps,
            "pre_generated_answer": trace.final_answer or None,
        },
        "label": {"steps": label_steps, "total_time": None, "finish_reason": finish_reason},
    }


def _jsonl(trace: Trace, steps: list[str], label: ResolvedLabel | None) -> dict[str, Any]:
    return {
        "id": trace.external_id,
        "source": trace.source,
        "problem": trace.problem.text,
        "reference_answer": trace.problem.reference_answer,
        "generator": trace.generator,
        "split": trace.split,
        "steps": steps,
        "final_answer": trace.final_answer,
        "final_answer_correct": trace.final_answer_correct,
        "first_error_step": None if label is None else label.first_error_step,
        "step_ratings": None if label is None else label.step_ratings,
        "metadata": trace.metadata,
    }


_RECORD_BUILDERS = {
    "processbench": _processbench,
    "trl": _trl,
    "prm800k": _prm800k,
    "math-shepherd": _math_shepherd,
    "jsonl": _jsonl,
}


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
) -> ExportSummary:
    """Write an export to a path (``.parquet`` suffix means parquet) or a binary stream."""
    summary = ExportSummary()
    records = iter_export(project, fmt, split=split, labels=labels, summary=summary)
    if parquet is None:
        parquet = isinstance(out, str | Path) and str(out).endswith(".parquet")
    if parquet:
        _write_parquet(records, out, fmt)
    elif isinstance(out, str | Path):
        with open(out, "wb") as fh:
            fh.writelines(iter_jsonl_lines(records))
    else:
        out.writelines(iter_jsonl_lines(records))
    return summary


def _parquet_schema(fmt: str):
    import pyarrow as pa

    text, texts = pa.string(), pa.list_(pa.string())
    fields = {
        "processbench": [
            ("id", text),
            ("generator", text),
            ("problem", text),
            ("steps", texts),
            ("final_answer_correct", pa.bool_()),
            ("label", pa.int64()),
        ],
        "trl": [("prompt", text), ("completions", texts), ("labels", pa.list_(pa.bool_()))],
        "math-shepherd": [("input", text), ("label", text), ("task", text)],
        "prm800k": [
            ("labeler", text),
            ("timestamp", text),
            ("generation", pa.int64()),
            ("is_quality_control_question", pa.bool_()),
            ("is_initial_screening_question", pa.bool_()),
            ("question", text),
            ("label", text),
        ],
        "jsonl": [
            ("id", text),
            ("source", text),
            ("problem", text),
            ("reference_answer", text),
            ("generator", text),
            ("split", text),
            ("steps", texts),
            ("final_answer", text),
            ("final_answer_correct", pa.bool_()),
            ("first_error_step", pa.int64()),
            ("step_ratings", pa.list_(pa.int64())),
            ("metadata", text),
        ],
    }[fmt]
    return pa.schema(fields)


def _write_parquet(
    records: Iterator[dict[str, Any]], out: str | Path | IO[bytes], fmt: str
) -> None:
    """Parquet in row groups of one chunk each, with a fixed schema per format. Nested
    free-form fields (metadata, PRM800K's ``question``/``label``) are JSON text, which
    the importer decodes, so these files import again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(fmt)
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(out, schema) as writer:
        for record in records:
            batch.append(
                {k: json.dumps(v) if isinstance(v, dict) else v for k, v in record.items()}
            )
            if len(batch) >= CHUNK_TRACES:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch.clear()
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
