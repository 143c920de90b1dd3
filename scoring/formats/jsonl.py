"""Generic records: a problem (``problem``, ``question`` or ``prompt``), then ``steps``
(a list) or a solution string (``solution``, ``response`` or ``completion``) split
with the configured splitter; optional id, answer, generator, split, label
(``first_error_step`` or ``label``, with ``step_ratings`` that agree with it),
metadata (an object, or JSON text holding one).

The export keeps every trace and every step, with the label (or null) beside them.
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
    first_error,
    json_object,
    optional_bool,
    steps_of,
    str_id,
    text,
)
from scoring.labels import FIRST_ERROR, RATINGS, LabelError, normalise_label
from scoring.steps import split_steps

PROBLEM_KEYS = ("problem", "question", "prompt")
SOLUTION_KEYS = ("solution", "response", "completion")


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    problem_key = next((k for k in PROBLEM_KEYS if k in record), "problem")
    problem = text(record, problem_key, where)
    if "steps" in record:
        steps = steps_of(record, "steps", where)
    else:
        solution_key = next((k for k in SOLUTION_KEYS if k in record), None)
        if solution_key is None:
            raise ImportFormatError(
                where, "missing (or 'solution' to split into steps)", field="steps"
            )
        steps = split_steps(text(record, solution_key, where), options.step_splitter)
        if not steps:
            raise ImportFormatError(where, "has no steps after splitting", field=solution_key)
    reference = record.get("reference_answer", record.get("answer"))
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=str_id(record, "id", where) or content_id(problem, *steps),
            reference_answer="" if reference is None else str(reference),
            generator=text(record, "generator", where, required=False),
            split=options.split
            or text(record, "split", where, required=False)
            or options.default_split,
            final_answer=text(record, "final_answer", where, required=False),
            final_answer_correct=optional_bool(record, "final_answer_correct", where),
            metadata=json_object(record, "metadata", where, required=False),
            label=_label(record, len(steps), where),
        )
    ]


def _label(record: dict, num_steps: int, where: str) -> ParsedLabel | None:
    """The label, refused when its step ratings contradict its first error (a -1
    before it or in an all-correct trace, or the first error rated 0/+1)."""
    label_key = next((k for k in ("first_error_step", "label") if record.get(k) is not None), None)
    if label_key is None:
        return None
    error = first_error(record[label_key], num_steps, where, label_key)
    ratings = record.get("step_ratings")
    if ratings is None:
        return ParsedLabel(first_error_step=error)
    if (
        not isinstance(ratings, list)
        or len(ratings) != num_steps
        or any(r is not None and (isinstance(r, bool) or r not in RATINGS) for r in ratings)
    ):
        raise ImportFormatError(
            where, f"expected {num_steps} entries of -1, 0, 1 or null", field="step_ratings"
        )
    try:
        normalise_label(num_steps, FIRST_ERROR, error, ratings)
        if error >= 0 and ratings[error] not in (None, -1):
            raise LabelError(f"step {error} is rated {ratings[error]} but is the first error")
    except LabelError as exc:
        raise ImportFormatError(
            where, f"contradicts {label_key} {error}: {exc}", field="step_ratings"
        ) from None
    return ParsedLabel(first_error_step=error, step_ratings=ratings)


def write(
    trace: ExportTrace,
    first_error_step: int | None,
    step_ratings: list[int | None] | None = None,
) -> dict[str, Any]:
    """Unlabelled traces too: ``first_error_step`` and ``step_ratings`` null."""
    return {
        "id": trace.external_id,
        "source": trace.source,
        "problem": trace.problem,
        "reference_answer": trace.reference_answer,
        "generator": trace.generator,
        "split": trace.split,
        "steps": trace.steps,
        "final_answer": trace.final_answer,
        "final_answer_correct": trace.final_answer_correct,
        "first_error_step": first_error_step,
        "step_ratings": None if first_error_step is None else step_ratings,
        "metadata": trace.metadata,
    }


def parquet_fields() -> list:
    """``metadata`` goes as JSON text (parquet has no free-form nested type)."""
    import pyarrow as pa

    text_type = pa.string()
    return [
        ("id", text_type),
        ("source", text_type),
        ("problem", text_type),
        ("reference_answer", text_type),
        ("generator", text_type),
        ("split", text_type),
        ("steps", pa.list_(text_type)),
        ("final_answer", text_type),
        ("final_answer_correct", pa.bool_()),
        ("first_error_step", pa.int64()),
        ("step_ratings", pa.list_(pa.int64())),
        ("metadata", text_type),
    ]
