"""Score files: JSONL, one record per trace ``{id, scores[], adapter, model, n_tokens,
seconds, raw?, details?}``, written as scores arrive."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scoring.formats.base import ImportFormatError
from scoring.formats.files import MAX_RECORD_BYTES
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
    ``NaN``, which strict JSON parsers refuse; a null reads back as NaN too. A score
    file may come from elsewhere (``--scores-file``), so it gets the trace readers'
    guards: a line longer than :data:`MAX_RECORD_BYTES` is refused before it is
    parsed, and any bad record raises :class:`ImportFormatError` naming file and line."""
    out: dict[str, list[float]] = {}
    name = Path(path).name
    with open(path, "rb") as fh:
        line_no = 0
        while line := fh.readline(MAX_RECORD_BYTES + 1):
            line_no += 1
            where = f"{name}, line {line_no}"
            if len(line) > MAX_RECORD_BYTES:
                raise ImportFormatError(
                    where, f"the line is longer than {MAX_RECORD_BYTES // 2**20} MiB"
                )
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise ImportFormatError(where, "the line is not UTF-8") from None
            except json.JSONDecodeError as exc:
                raise ImportFormatError(where, f"malformed JSON ({exc.msg})") from None
            except ValueError as exc:  # an integer of more digits than Python converts
                raise ImportFormatError(where, f"malformed JSON ({exc})") from None
            except RecursionError:
                raise ImportFormatError(where, "nested too deeply") from None
            out.update([_score_entry(record, where)])
    return out


def _score_entry(record: Any, where: str) -> tuple[str, list[float]]:
    """``(trace id, scores)`` of one record, or an error saying what is wrong with it."""
    if not isinstance(record, dict) or "id" not in record or "scores" not in record:
        raise ImportFormatError(where, "expected a score record {id, scores[]}")
    trace_id, scores = record["id"], record["scores"]
    if isinstance(trace_id, bool) or not isinstance(trace_id, str | int):
        raise ImportFormatError(where, f"id must be a string or an integer, not {trace_id!r:.60}")
    if not isinstance(scores, list):
        raise ImportFormatError(where, f"scores must be a list, not {type(scores).__name__}")
    floats = []
    for i, score in enumerate(scores):
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise ImportFormatError(
                where, f"scores[{i}] must be a number or null, not {score!r:.60}"
            )
        try:
            floats.append(float("nan") if score is None else float(score))
        except OverflowError:  # an integer beyond any float
            raise ImportFormatError(where, f"scores[{i}] is out of range") from None
    return str(trace_id), floats
