"""Score files: JSONL, one record per trace ``{id, scores[], adapter, model, n_tokens,
seconds, raw?, details?}``, written as scores arrive."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scoring.formats.base import ImportFormatError
from scoring.types import StepScores


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
    """``{trace id: step scores}`` from a file :func:`write_scores` wrote, line by line.

    The stdlib decoder, not the record reader: ``json.dumps`` writes a NaN score as
    ``NaN``, which strict JSON parsers refuse; a null reads back as NaN too."""
    out: dict[str, list[float]] = {}
    name = Path(path).name
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{name}, line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportFormatError(where, f"malformed JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "id" not in record or "scores" not in record:
                raise ImportFormatError(where, "expected a score record {id, scores[]}")
            scores = record["scores"]
            out[str(record["id"])] = [float("nan") if s is None else float(s) for s in scores]
    return out
