"""Reading traces and gold labels, writing and reading step scores (JSON / JSONL).

Accepted trace records, detected per record:
- ProcessBench: ``{id, generator, problem, steps[], final_answer_correct, label}``
- TRL stepwise supervision: ``{prompt, completions[], labels[]}``
- Stepwise JSONL: ``{id, problem, steps[], reference_answer?, label?}``
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scoring.types import StepScores, Trace


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """A JSON array, a single JSON object or JSON lines."""
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    try:
        record = json.loads(stripped)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [record] if isinstance(record, dict) else list(record)


def _split_of(record_id: str, default: str) -> str:
    # ProcessBench ids are "<split>-<n>", e.g. "gsm8k-17".
    head, sep, tail = record_id.rpartition("-")
    return head if sep and tail.isdigit() else default


def trace_from_record(record: dict[str, Any], index: int = 0, split: str = "") -> Trace:
    if "completions" in record and "prompt" in record:  # TRL
        labels = tuple(bool(x) for x in record.get("labels", ()))
        first = next((i for i, ok in enumerate(labels) if not ok), -1) if labels else None
        record_id = str(record.get("id", index))
        return Trace(
            problem=record["prompt"],
            steps=tuple(record["completions"]),
            id=record_id,
            split=record.get("split") or _split_of(record_id, split),
            first_error_step=first,
            step_labels=labels or None,
        )
    record_id = str(record.get("id", index))
    label = record.get("label", record.get("first_error_step"))
    return Trace(
        problem=record["problem"],
        steps=tuple(record["steps"]),
        reference_answer=record.get("reference_answer"),
        id=record_id,
        split=record.get("split") or _split_of(record_id, split),
        first_error_step=None if label is None else int(label),
        final_answer_correct=record.get("final_answer_correct"),
    )


def read_traces(path: str | Path) -> list[Trace]:
    """Traces from a file; the split defaults to the file's stem (``gsm8k.json`` -> gsm8k)."""
    stem = Path(path).stem
    return [trace_from_record(r, i, stem) for i, r in enumerate(read_records(path))]


def scores_to_record(scores: StepScores) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": scores.trace_id,
        "scores": list(scores.scores),
        "adapter": scores.adapter,
        "model": scores.model,
        "n_tokens": scores.n_tokens,
        "seconds": round(scores.seconds, 6),
    }
    if scores.raw is not None:
        record["raw"] = list(scores.raw)
    if scores.details:
        record["details"] = scores.details
    return record


def write_scores(path: str | Path, scores: Iterable[StepScores]) -> Iterator[StepScores]:
    """Write JSONL as scores arrive (a crash keeps what was done); yields each one back."""
    with open(path, "w", encoding="utf-8") as out:
        for item in scores:
            out.write(json.dumps(scores_to_record(item), ensure_ascii=False) + "\n")
            out.flush()
            yield item


def read_scores(path: str | Path) -> dict[str, list[float]]:
    """``{trace id: step scores}``; JSON null (NaN written by json) reads back as NaN."""
    out: dict[str, list[float]] = {}
    for record in read_records(path):
        out[str(record["id"])] = [float("nan") if s is None else float(s) for s in record["scores"]]
    return out
