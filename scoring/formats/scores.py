"""Score files: JSONL, one record per trace ``{id, scores[], adapter, model, n_tokens,
seconds, raw?, details?}``, written as scores arrive."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from scoring.formats.base import MAX_DEPTH, ImportFormatError
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
    """``{trace id: step scores}`` from a score file (see :func:`iter_scores`)."""
    with open(path, "rb") as fh:
        return {item.trace_id: list(item.scores) for _, item in iter_scores(fh, Path(path).name)}


# The largest integer a record may hold anywhere: PostgreSQL's bigint, and a float
# (a score) can hold it. Longer digit strings are refused before Python converts them
# (a 4,300-digit integer costs quadratic time, a longer one raises ValueError).
_MAX_INT = 2**63 - 1


class _HugeInteger(Exception):
    def __init__(self, digits: int):
        self.digits = digits


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(value := int(text)) > _MAX_INT:
        raise _HugeInteger(len(text.lstrip("-")))
    return value


def iter_scores(fh: IO[bytes], name: str) -> Iterator[tuple[int, StepScores]]:
    """``(line number, scores)`` of each record of a score file, read line by line: the
    one reader of score files, for the CLI (``--scores-file``) and the app's imports
    alike. A record is ``{id, scores[], adapter?, model?, n_tokens?, seconds?, raw?,
    details?}``; a null score (or ``NaN``, which ``json.dumps`` writes for one) marks a
    step without a verdict.

    A score file may come from anywhere, so nothing in it reaches a caller unchecked;
    any of these raises :class:`ImportFormatError` naming the file and the line:

    - a line longer than :data:`MAX_RECORD_BYTES` (refused after reading that much of
      it: a 300 MB line costs 16 MiB of memory, not 300 MB);
    - bytes that are not UTF-8, JSON that is malformed or nested more than
      :data:`MAX_DEPTH` levels;
    - an integer beyond 64 bits, an infinite number (``Infinity``, ``1e999``) anywhere,
      ``NaN`` anywhere but in ``scores`` and ``raw``, a score beyond a 4-byte float
      (``1e39``, ``1e-300``: the app stores scores as ``real``);
    - text holding a NUL or a lone surrogate (``\\u0000``, ``\\ud800``: PostgreSQL
      refuses both);
    - a field of the wrong type, and an id seen on an earlier line."""
    seen: dict[str, int] = {}
    line_no = 0
    while line := fh.readline(MAX_RECORD_BYTES + 1):
        line_no += 1
        where = f"{name}, line {line_no}"
        if len(line) > MAX_RECORD_BYTES:
            raise ImportFormatError(
                where, f"the line is longer than {MAX_RECORD_BYTES // 2**20} MiB"
            )
        if line_no == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark (Windows editors)
        if not line.strip():
            continue
        record = _decode(line, where)
        item = _score_entry(record, where)
        if item.trace_id in seen:
            raise ImportFormatError(
                where,
                f"id {item.trace_id!r:.80} appears twice (first on line {seen[item.trace_id]})",
            )
        seen[item.trace_id] = line_no
        yield line_no, item


def _decode(line: bytes, where: str) -> Any:
    try:
        return json.loads(line.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise ImportFormatError(where, "the line is not UTF-8") from None
    except _HugeInteger as exc:
        raise ImportFormatError(
            where, f"an integer of {exc.digits} digits is out of range (at most 64 bits)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ImportFormatError(where, f"malformed JSON ({exc.msg})") from None
    except RecursionError:
        raise ImportFormatError(where, "nested too deeply") from None


def _score_entry(record: Any, where: str) -> StepScores:
    """The scores of one record, or an error saying what is wrong with it."""
    if not isinstance(record, dict) or "id" not in record or "scores" not in record:
        raise ImportFormatError(where, "expected a score record {id, scores[]}")
    for key, value in record.items():
        _check_json(value, where, str(key), numbers_may_be_nan=key in ("scores", "raw"))
        _check_text(key, where, "(a key)")
    trace_id = record["id"]
    if isinstance(trace_id, bool) or not isinstance(trace_id, str | int):
        raise ImportFormatError(where, f"id must be a string or an integer, not {trace_id!r:.60}")
    raw = record.get("raw")
    details = record.get("details") or {}
    if not isinstance(details, dict):
        raise ImportFormatError(where, "must be an object", field="details")
    n_tokens = record.get("n_tokens") or 0
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or not 0 <= n_tokens < 2**31:
        raise ImportFormatError(where, "must be a whole number below 2^31", field="n_tokens")
    seconds = record.get("seconds") or 0.0
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ImportFormatError(where, "must be a number", field="seconds")
    return StepScores(
        trace_id=str(trace_id),
        scores=_numbers(record["scores"], where, "scores"),
        adapter=_optional_text(record, "adapter", where),
        model=_optional_text(record, "model", where),
        n_tokens=n_tokens,
        seconds=float(seconds),
        raw=None if raw is None else _numbers(raw, where, "raw"),
        details=details,
    )


def _numbers(values: Any, where: str, key: str) -> tuple[float, ...]:
    if not isinstance(values, list):
        raise ImportFormatError(where, f"{key} must be a list, not {type(values).__name__}")
    floats = []
    for i, value in enumerate(values):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ImportFormatError(
                where, f"{key}[{i}] must be a number or null, not {value!r:.60}"
            )
        number = math.nan if value is None else float(value)
        if not _fits_real(number):
            raise ImportFormatError(
                where, f"{key}[{i}] is {value!r:.40}, beyond a 4-byte float's range"
            )
        floats.append(number)
    return tuple(floats)


def _fits_real(number: float) -> bool:
    """Whether ``number`` survives a 4-byte float (PostgreSQL's ``real``, the app's
    score columns, refuses an overflow and a nonzero value that would round to 0)."""
    if math.isnan(number) or number == 0:
        return True
    try:
        as_real = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError:  # struct refuses some overflows, rounds others to infinity
        return False
    return math.isfinite(as_real) and as_real != 0


def _optional_text(record: dict, key: str, where: str) -> str:
    value = record.get(key) or ""
    if not isinstance(value, str):
        raise ImportFormatError(where, "must be text", field=key)
    return value


def _check_json(value: Any, where: str, field: str, *, numbers_may_be_nan: bool) -> None:
    """Refuse what the database cannot store, anywhere in ``value``: deeper nesting than
    :data:`MAX_DEPTH` (the record is level 1), infinite numbers, NaN (except where it
    means "no score"), text with NUL or a lone surrogate. Iterative: no recursion limit."""
    stack = [(value, 2)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, where, field)
        elif isinstance(item, float) and not math.isfinite(item):
            if not (numbers_may_be_nan and math.isnan(item) and depth == 3):
                raise ImportFormatError(where, f"holds a non-finite number ({item})", field=field)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ImportFormatError(
                    where, f"is nested more than {MAX_DEPTH} levels deep", field=field
                )
            if isinstance(item, dict):
                for key in item:
                    _check_text(key, where, field)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _check_text(text: str, where: str, field: str) -> None:
    if "\x00" in text:
        raise ImportFormatError(where, "holds a NUL character (\\u0000)", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ImportFormatError(
            where, "holds a lone surrogate (an unpaired \\ud800-\\udfff escape)", field=field
        ) from None
