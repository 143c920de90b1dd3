"""TRL stepwise supervision: ``{prompt, completions[], labels[]}``, one bool per step.

Exports end each trace at its first wrong step (see :func:`~scoring.formats.base.truncated`).
"""

from __future__ import annotations

from typing import Any

from scoring.formats.base import (
    ExportTrace,
    ImportFormatError,
    ParsedLabel,
    ParsedTrace,
    ParseOptions,
    content_id,
    require,
    steps_of,
    str_id,
    text,
    truncated,
)


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    prompt = text(record, "prompt", where)
    steps = steps_of(record, "completions", where)
    labels = require(record, "labels", where)
    if not isinstance(labels, list) or not all(isinstance(v, bool) for v in labels):
        raise ImportFormatError(where, "expected a list of true/false", field="labels")
    if len(labels) != len(steps):
        raise ImportFormatError(
            where, f"has {len(labels)} labels for {len(steps)} completions", field="labels"
        )
    ratings: list[int | None] = [1 if ok else -1 for ok in labels]
    first_error = labels.index(False) if False in labels else -1
    return [
        ParsedTrace(
            problem=prompt,
            steps=steps,
            external_id=str_id(record, "id", where) or content_id(prompt, *steps),
            generator=text(record, "generator", where, required=False),
            split=options.split or options.default_split,
            label=ParsedLabel(first_error_step=first_error, step_ratings=ratings),
        )
    ]


def write(
    trace: ExportTrace, first_error_step: int, step_ratings: list[int | None] | None = None
) -> dict[str, Any]:
    completions, flags = truncated(trace.steps, first_error_step)
    return {"prompt": trace.problem, "completions": completions, "labels": flags}


def parquet_fields() -> list:
    import pyarrow as pa

    return [
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.bool_())),
    ]
