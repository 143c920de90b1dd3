"""The trace formats of the field: reading files into plain records, writing exports.

One library for the importer, the exporter and ``python -m scoring``. Nothing here
touches a database: :func:`iter_parsed` turns a file's records into
:class:`ParsedTrace` objects and raises :class:`ImportFormatError` naming the file,
the line or record, and the field at the first problem it finds.

Formats (``--format``): processbench, prm800k, prm800k-stepwise, math-shepherd,
trl, bbm, gsm8k, gsm8k-solutions, jsonl; ``auto`` detects one from the first
record's keys. Each has a module with its reader, and with its writer and parquet
schema where Stepwise exports it. Files (:mod:`scoring.formats.files`): JSON (an
array, one object, or concatenated objects as PRM800K ships them), JSONL, parquet,
each optionally gzip-compressed, all streamed.

A store passes its :class:`Limits` in :class:`ParseOptions`: every parsed trace is
then checked against them (text PostgreSQL cannot store, values longer than their
column), with the record named, instead of failing inside the store's write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scoring.formats import (
    bbm,
    gsm8k,
    jsonl,
    math_shepherd,
    prm800k,
    prm800k_stepwise,
    processbench,
    trl,
)
from scoring.formats.base import (
    ExportTrace,
    ImportFormatError,
    Limits,
    ParsedLabel,
    ParsedTrace,
    ParseOptions,
    check_length,
    check_trace,
    derived_split,
    json_text_object,
)
from scoring.formats.files import MAX_RECORD_BYTES, UTF8_BOM, RecordSource, open_records
from scoring.formats.scores import iter_scores, read_scores, scores_to_record, write_scores
from scoring.steps import SPLITTERS
from scoring.types import Trace

__all__ = [
    "FORMATS",
    "MAX_RECORD_BYTES",
    "REGISTRY",
    "UTF8_BOM",
    "ExportTrace",
    "Format",
    "ImportFormatError",
    "Limits",
    "ParseOptions",
    "ParsedLabel",
    "ParsedTrace",
    "RecordSource",
    "derived_split",
    "detect_format",
    "iter_parsed",
    "open_records",
    "iter_scores",
    "read_scores",
    "read_traces",
    "scores_to_record",
    "split_from_file_name",
    "to_scoring_trace",
    "write_parquet",
    "write_scores",
]

Reader = Callable[[dict, str, ParseOptions], list[ParsedTrace]]
# (trace, first error, step ratings) -> one export record
Writer = Callable[[ExportTrace, Any, Any], dict[str, Any]]


@dataclass(frozen=True)
class Format:
    name: str
    read: Reader
    write: Writer | None = None  # None: Stepwise does not export this format
    parquet_fields: Callable[[], list] | None = None


REGISTRY: dict[str, Format] = {
    f.name: f
    for f in (
        Format("processbench", processbench.read, processbench.write, processbench.parquet_fields),
        Format("prm800k", prm800k.read, prm800k.write, prm800k.parquet_fields),
        Format("prm800k-stepwise", prm800k_stepwise.read),
        Format(
            "math-shepherd", math_shepherd.read, math_shepherd.write, math_shepherd.parquet_fields
        ),
        Format("trl", trl.read, trl.write, trl.parquet_fields),
        Format("bbm", bbm.read),
        Format("gsm8k", gsm8k.read),
        Format("gsm8k-solutions", gsm8k.read_solutions),
        Format("jsonl", jsonl.read, jsonl.write, jsonl.parquet_fields),
    )
}
FORMATS = tuple(REGISTRY)

# Fields of the generic jsonl format that ProcessBench's reader would drop: a record with
# ProcessBench's keys plus one of these is jsonl, so its answer and split survive.
JSONL_ONLY_KEYS = frozenset(
    {
        "answer",
        "reference_answer",
        "split",
        "step_ratings",
        "first_error_step",
        "final_answer",
        "metadata",
    }
)


def detect_format(record: dict, where: str) -> str:
    """Guess the format from the keys of the first record."""
    keys = set(record)
    if {"prompt", "completions", "labels"} <= keys:
        return "trl"
    if {"problem", "steps", "label"} <= keys and not keys & JSONL_ONLY_KEYS:
        return "processbench"
    if {"question", "label"} <= keys and isinstance(
        json_text_object(record["label"], where, "label"), dict
    ):
        return "prm800k"
    if {"instruction", "responses", "next_response"} <= keys:
        return "prm800k-stepwise"
    if "input" in keys and math_shepherd.has_tags(record["input"]):
        return "math-shepherd"
    if {"input", "steps"} <= keys and "mistake_index" in keys:
        return "bbm"
    if "question" in keys and any(isinstance(v, dict) and "solution" in v for v in record.values()):
        return "gsm8k-solutions"
    if keys & set(jsonl.PROBLEM_KEYS) and (keys & {"steps", *jsonl.SOLUTION_KEYS}):
        return "jsonl"
    if {"question", "answer"} <= keys and "####" in str(record["answer"]):
        return "gsm8k"
    raise ImportFormatError(
        where,
        f"cannot detect the format from the keys {sorted(keys)}; choose the format "
        f"(one of {', '.join(FORMATS)}) instead of auto",
    )


def split_from_file_name(name: str, limits: Limits | None = None) -> str:
    """The split of traces whose records carry none: the file's name before its first
    dot (``gsm8k.json`` -> ``gsm8k``)."""
    return derived_split(Path(name).name.split(".")[0], limits)


def iter_parsed(
    source: RecordSource, fmt: str = "auto", options: ParseOptions | None = None
) -> Iterator[tuple[str, str, list[ParsedTrace]]]:
    """Yield ``(format, where, traces)`` per record; the format is fixed by the first record."""
    options = options or ParseOptions()
    if fmt != "auto" and fmt not in REGISTRY:
        raise ImportFormatError(
            source.name, f"unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}"
        )
    if options.step_splitter not in SPLITTERS:
        raise ImportFormatError(
            source.name,
            f"unknown step splitter {options.step_splitter!r}; choose one of {', '.join(SPLITTERS)}",
        )
    limits = options.limits
    if limits is not None:
        check_length(options.split, limits.split, source.name, "split")
    read = REGISTRY[fmt].read if fmt in REGISTRY else None
    seen_any = False
    for where, record in source.records:
        if not isinstance(record, dict):
            raise ImportFormatError(where, f"expected a JSON object, got {type(record).__name__}")
        if read is None:
            fmt = detect_format(record, where)
            read = REGISTRY[fmt].read
        seen_any = True
        traces = read(record, where, options)
        if limits is not None:
            for trace in traces:
                check_trace(trace, where, limits)
        yield fmt, where, traces
    if not seen_any:
        raise ImportFormatError(source.name, "the file holds no records")


# ---------------------------------------------------------------- for scoring


def to_scoring_trace(parsed: ParsedTrace) -> Trace:
    """A parsed trace as :mod:`scoring` takes it; a rating of 0 (fine, no progress)
    counts as a correct step."""
    label = parsed.label
    ratings = label.step_ratings if label is not None else None
    return Trace(
        problem=parsed.problem,
        steps=tuple(parsed.steps),
        reference_answer=parsed.reference_answer or None,
        id=parsed.external_id,
        split=parsed.split,
        first_error_step=label.first_error_step if label is not None else None,
        step_labels=None
        if ratings is None
        else tuple(None if r is None else r >= 0 for r in ratings),
        final_answer_correct=parsed.final_answer_correct,
    )


def read_traces(
    path: str | Path,
    fmt: str = "auto",
    *,
    split: str = "",
    step_splitter: str = "paragraphs",
) -> list[Trace]:
    """Every trace of a file in any format the importer reads, split as the importer
    splits it (from the record or id, else the file name); traces without a label
    have ``first_error_step`` None."""
    source = open_records(path)
    options = ParseOptions(
        split=split, step_splitter=step_splitter, default_split=split_from_file_name(source.name)
    )
    return [
        to_scoring_trace(parsed)
        for _, _, traces in iter_parsed(source, fmt, options)
        for parsed in traces
    ]


# ---------------------------------------------------------------- exports


def write_parquet(
    records: Iterable[dict[str, Any]],
    out: str | Path | IO[bytes],
    fmt: str,
    rows_per_group: int = 2048,
) -> None:
    """Export records as parquet, in row groups of ``rows_per_group``, with the
    format's fixed schema. Nested free-form fields (metadata, PRM800K's
    ``question``/``label``) go as JSON text, which the readers decode, so these files
    import again."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = REGISTRY[fmt].parquet_fields
    if fields is None:
        raise ValueError(f"{fmt} is not an export format")
    schema = pa.schema(fields())
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(out, schema) as writer:
        for record in records:
            batch.append(
                {k: json.dumps(v) if isinstance(v, dict) else v for k, v in record.items()}
            )
            if len(batch) >= rows_per_group:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch.clear()
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
