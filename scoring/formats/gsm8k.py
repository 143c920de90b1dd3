"""GSM8K (``{question, answer}``, the reference solutions) and OpenAI's GSM8K
model-solutions file (``gsm8k-solutions``: several solutions per problem, each with an
outcome flag, no step labels). Read only.

Problems are keyed by their text: both files' traces of one problem share an id prefix.
"""

from __future__ import annotations

import re

from scoring.formats.base import (
    ImportFormatError,
    ParsedTrace,
    ParseOptions,
    content_id,
    optional_bool,
    text,
)
from scoring.steps import split_lines

# The generator of the reference traces: not a model, so no best-of-N candidate.
REFERENCE_GENERATOR = "reference"
_FINAL = re.compile(r"^\s*A:\s*(.*?)\s*$")


def _problem_key(question: str) -> str:
    """The id prefix that the GSM8K files' traces of one problem share."""
    return content_id(question)[:16]


def _answer(solution: str) -> str:
    lines = split_lines(solution)
    if lines:
        match = _FINAL.match(lines[-1])
        if match:
            return match.group(1)
    if "####" in solution:
        return solution.rsplit("####", 1)[1].strip()
    return ""


def read_solutions(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """OpenAI's GSM8K model-solutions file: several solutions per problem, outcome only."""
    question = text(record, "question", where)
    ground_truth = text(record, "ground_truth", where)
    pid = _problem_key(question)
    traces = []
    for key, value in record.items():
        if not isinstance(value, dict) or "solution" not in value:
            continue
        solution = text(value, "solution", where + f", {key}")
        steps = split_lines(solution)
        if not steps:
            raise ImportFormatError(where, "has no steps", field=f"{key}.solution")
        traces.append(
            ParsedTrace(
                problem=question,
                steps=steps,
                external_id=f"{pid}/{key}",
                reference_answer=_answer(ground_truth),
                reference_solution=ground_truth,
                generator=key,
                split=options.split or options.default_split,
                final_answer=_answer(solution),
                final_answer_correct=optional_bool(value, "is_correct", where + f", {key}"),
            )
        )
    if not traces:
        raise ImportFormatError(where, "has no model solutions (objects with a 'solution' field)")
    return traces


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """GSM8K itself: ``{question, answer}``, the answer being the reference solution,
    one line per step with calculator notes ``<<a*b=c>>``, then ``#### <n>``.

    One trace per problem, generator ``reference``, correct by definition: its steps
    are the solution's lines before ``####`` (calculator notes kept as written), its
    final answer the number after it. The problem's reference answer and solution are
    filled in too; the id shares its prefix with the model-solutions file's traces,
    so both files' traces meet on one problem."""
    question = text(record, "question", where)
    solution = text(record, "answer", where)
    body, marker, answer = solution.rpartition("####")
    answer = answer.strip()
    if not marker or not answer:
        raise ImportFormatError(where, "has no final '#### <answer>' line", field="answer")
    steps = split_lines(body)
    if not steps:
        raise ImportFormatError(where, "has no solution lines before '####'", field="answer")
    return [
        ParsedTrace(
            problem=question,
            steps=steps,
            external_id=f"{_problem_key(question)}/reference",
            reference_answer=answer,
            reference_solution=solution,
            generator=REFERENCE_GENERATOR,
            split=options.split or options.default_split,
            final_answer=answer,
            final_answer_correct=True,
        )
    ]
