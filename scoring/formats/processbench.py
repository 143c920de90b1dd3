"""ProcessBench: ``{id, generator, problem, steps[], final_answer_correct, label}``,
``label`` the 0-based index of the earliest wrong step, -1 when all are correct.

The split comes from the id (``gsm8k-17`` -> ``gsm8k``), else the file name.
"""

from __future__ import annotations

from typing import Any

from scoring.formats.base import (
    ExportTrace,
    ImportFormatError,
    ParsedLabel,
    ParsedTrace,
    ParseOptions,
    derived_split,
    first_error,
    optional_bool,
    require,
    steps_of,
    str_id,
    text,
)


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    external_id = str_id(record, "id", where)
    if external_id is None:
        raise ImportFormatError(where, "missing", field="id")
    steps = steps_of(record, "steps", where)
    label = first_error(require(record, "label", where), len(steps), where, "label")
    correct = optional_bool(record, "final_answer_correct", where)
    split = options.split or (
        derived_split(external_id.rsplit("-", 1)[0], options.limits)
        if "-" in external_id
        else options.default_split
    )
    return [
        ParsedTrace(
            problem=text(record, "problem", where),
            steps=steps,
            external_id=external_id,
            generator=text(record, "generator", where, required=False),
            split=split,
            final_answer_correct=correct,
            label=ParsedLabel(first_error_step=label),
        )
    ]


def write(
    trace: ExportTrace, first_error_step: int, step_ratings: list[int | None] | None = None
) -> dict[str, Any]:
    return {
        "id": trace.external_id,
        "generator": trace.generator,
        "problem": trace.problem,
        "steps": trace.steps,
        "final_answer_correct": trace.final_answer_correct,
        "label": first_error_step,
    }


def parquet_fields() -> list:
    import pyarrow as pa

    return [
        ("id", pa.string()),
        ("generator", pa.string()),
        ("problem", pa.string()),
        ("steps", pa.list_(pa.string())),
        ("final_answer_correct", pa.bool_()),
        ("label", pa.int64()),
    ]
