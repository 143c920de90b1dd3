"""BIG-Bench Mistake: ``{input, steps[], target, answer, mistake_index}``,
``mistake_index`` 0-based, null when no step is wrong. Read only.
"""

from __future__ import annotations

from scoring.formats.base import (
    ImportFormatError,
    ParsedLabel,
    ParsedTrace,
    ParseOptions,
    content_id,
    first_error,
    str_id,
    string_list,
    text,
)


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """A few traces hold an empty step where the model wrote a blank line
    (dyck_languages.jsonl line 539, step 54). Nothing in it can be judged, so empty
    steps are dropped and ``mistake_index`` is shifted down past them, still pointing
    at the same step; the file's indexes of the dropped steps are kept in the metadata
    (``dropped_empty_steps``). A ``mistake_index`` at an empty step is an error."""
    problem = text(record, "input", where)
    raw_steps = string_list(record, "steps", where)
    steps = [step for step in raw_steps if step.strip()]
    if not steps:
        raise ImportFormatError(where, "has no steps", field="steps")
    dropped = [i for i, step in enumerate(raw_steps) if not step.strip()]
    mistake = record.get("mistake_index")
    error = -1 if mistake is None else first_error(mistake, len(raw_steps), where, "mistake_index")
    if error in dropped:
        raise ImportFormatError(where, f"{error} points at an empty step", field="mistake_index")
    if error >= 0:
        error -= sum(1 for i in dropped if i < error)
    target = record.get("target")
    answer = record.get("answer")
    correct = None
    if target is not None and answer is not None:
        correct = str(answer).strip() == str(target).strip()
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=str_id(record, "id", where) or content_id(problem, *steps),
            reference_answer="" if target is None else str(target),
            generator=text(record, "generator", where, required=False) or "PaLM 2",
            split=options.split or options.default_split,
            final_answer="" if answer is None else str(answer),
            final_answer_correct=correct,
            metadata={"dropped_empty_steps": dropped} if dropped else {},
            label=ParsedLabel(first_error_step=error),
        )
    ]
