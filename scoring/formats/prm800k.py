"""PRM800K's original schema: per solution ``label.steps[i].completions[j].rating`` in
-1/0/+1, ``chosen_completion``, ``human_completion``, ``finish_reason``, and
``question.{problem, ground_truth_answer, pre_generated_steps}``.

Exports rate each step up to the first error (an unrated step counts +1, the first
error -1) and stop there, as a labeller finishing with ``found_error`` does.
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
    json_object,
    require,
    steps_of,
    text,
)
from scoring.labels import RATINGS


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """The trace follows the chosen completion of each labelled step (a human-written
    step where the labeller wrote one; the first -1 completion where a
    ``found_error`` solution stops). When ``question.pre_generated_steps`` is
    present (phase 2) the trace is that full model solution, rated up to where the
    labeller stopped."""
    question = json_object(record, "question", where)
    problem = text(question, "problem", where + ", question")
    label = json_object(record, "label", where)
    label_steps = require(label, "steps", where + ", label")
    if not isinstance(label_steps, list):
        raise ImportFormatError(where, "expected a list", field="label.steps")
    finish_reason = label.get("finish_reason") or ""

    chosen_texts: list[str] = []
    ratings: list[int | None] = []
    for i, step in enumerate(label_steps):
        step_where = f"{where}, label.steps[{i}]"
        completions = require(step, "completions", step_where)
        if not isinstance(completions, list):
            raise ImportFormatError(step_where, "expected a list", field="completions")
        for j, completion in enumerate(completions):
            rating = completion.get("rating") if isinstance(completion, dict) else None
            if rating is not None and (isinstance(rating, bool) or rating not in RATINGS):
                raise ImportFormatError(
                    step_where,
                    f"rating {rating!r} is not -1, 0 or 1",
                    field=f"completions[{j}].rating",
                )
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if chosen is not None:
            if (
                isinstance(chosen, bool)
                or not isinstance(chosen, int)
                or not 0 <= chosen < len(completions)
            ):
                raise ImportFormatError(
                    step_where, f"{chosen!r} is not a completion index", field="chosen_completion"
                )
            step_text, rating = (
                text(completions[chosen], "text", step_where),
                completions[chosen].get("rating"),
            )
        elif isinstance(human, dict):
            step_text, rating = (
                text(human, "text", step_where + ", human_completion"),
                human.get("rating"),
            )
        else:
            wrong = [c for c in completions if isinstance(c, dict) and c.get("rating") == -1]
            if finish_reason != "found_error" or not wrong:
                break  # the labeller stopped here without choosing (give up, bad problem)
            step_text, rating = text(wrong[0], "text", step_where), -1
        chosen_texts.append(step_text)
        ratings.append(rating)

    pre_generated = question.get("pre_generated_steps")
    if pre_generated:
        steps = steps_of(question, "pre_generated_steps", where + ", question")
        step_ratings = ratings[: len(steps)] + [None] * (len(steps) - len(ratings))
        final_answer = question.get("pre_generated_answer") or ""
    else:
        steps = chosen_texts
        step_ratings = ratings
        final_answer = ""
    if not steps:
        raise ImportFormatError(where, "no labelled steps", field="label.steps")

    first_error: int | None
    if -1 in step_ratings:
        first_error = step_ratings.index(-1)
    elif finish_reason == "solution" and len(ratings) >= len(steps):
        first_error = -1
    else:
        first_error = None
    generation = record.get("generation")
    labeler = record.get("labeler") or ""
    external_id = content_id(str(labeler), str(record.get("timestamp") or ""), problem, *steps)
    total_time = label.get("total_time")
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=external_id,
            reference_answer=str(question.get("ground_truth_answer") or ""),
            reference_solution=str(question.get("ground_truth_solution") or ""),
            generator=f"prm800k-generation-{generation}" if generation is not None else "prm800k",
            split=options.split or options.default_split,
            final_answer=str(final_answer),
            metadata={
                "finish_reason": finish_reason,
                "quality_control": bool(record.get("is_quality_control_question")),
                "initial_screening": bool(record.get("is_initial_screening_question")),
                "timestamp": record.get("timestamp"),
            },
            label=ParsedLabel(
                first_error_step=first_error,
                step_ratings=step_ratings,
                gave_up=finish_reason == "give_up",
                bad_problem=finish_reason == "bad_problem",
                external_annotator=str(labeler),
                seconds_spent=total_time / 1000 if isinstance(total_time, int | float) else None,
            ),
        )
    ]


def write(
    trace: ExportTrace, first_error_step: int, step_ratings: list[int | None] | None = None
) -> dict[str, Any]:
    steps = trace.steps
    if first_error_step == -1:
        judged = len(steps)
        finish_reason = "solution"
    else:
        judged = first_error_step + 1
        finish_reason = "found_error"
    ratings = step_ratings or []
    label_steps = []
    for i, step in enumerate(steps[:judged]):
        rating = ratings[i] if i < len(ratings) and ratings[i] is not None else None
        if rating is None:
            rating = -1 if i == first_error_step else 1
        label_steps.append(
            {
                "completions": [{"text": step, "rating": rating, "flagged": False}],
                "human_completion": None,
                "chosen_completion": None if rating == -1 else 0,
            }
        )
    return {
        "labeler": "stepwise",
        "timestamp": trace.created_at,
        "generation": None,
        "is_quality_control_question": trace.is_gold,
        "is_initial_screening_question": False,
        "question": {
            "problem": trace.problem,
            "ground_truth_answer": trace.reference_answer or None,
            "pre_generated_steps": steps,
            "pre_generated_answer": trace.final_answer or None,
        },
        "label": {"steps": label_steps, "total_time": None, "finish_reason": finish_reason},
    }


def parquet_fields() -> list:
    """Parquet has no free-form nested type: ``question`` and ``label`` go as JSON text."""
    import pyarrow as pa

    return [
        ("labeler", pa.string()),
        ("timestamp", pa.string()),
        ("generation", pa.int64()),
        ("is_quality_control_question", pa.bool_()),
        ("is_initial_screening_question", pa.bool_()),
        ("question", pa.string()),
        ("label", pa.string()),
    ]
