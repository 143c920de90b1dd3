"""Math-Shepherd: ``input`` holds the question, then steps ``Step k: ... ки`` each
closed by the tag `` ки`` at the end of its line; ``label`` is the same text with
``+``/``-`` in place of each tag.

Exports end each trace at its first wrong step (see :func:`~scoring.formats.base.truncated`)
and write the split as ``task``.
"""

from __future__ import annotations

import re
from typing import Any

from scoring.formats.base import (
    ExportTrace,
    ImportFormatError,
    ParsedLabel,
    ParsedTrace,
    ParseOptions,
    content_id,
    str_id,
    text,
    truncated,
)
from scoring.steps import SHEPHERD_TAG

_STEP_PREFIX = re.compile(r"^\s*Step\s*\d+\s*:\s*")
# Math-Shepherd's step tag: " ки" closing a step, so followed by a newline or the end.
# "ки" alone is a common Cyrillic letter pair ("руки") and must not split a step.
_SHEPHERD_TAG_AT_STEP_END = re.compile(rf" {SHEPHERD_TAG}(?=\r?\n|\Z)")
_STEP_MARKER = re.compile(r"(?<!\S)Step\s*(\d+)\s*:")


def has_tags(value: Any) -> bool:
    """Whether ``value`` is text with a step tag closing a line: how detection knows it."""
    return isinstance(value, str) and _SHEPHERD_TAG_AT_STEP_END.search(value) is not None


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """The question ends where the solution's "Step 1:" starts: see
    :func:`_solution_start`."""
    input_text = text(record, "input", where)
    label_text = text(record, "label", where, required=False)
    tags = list(_SHEPHERD_TAG_AT_STEP_END.finditer(input_text))
    if not tags:
        raise ImportFormatError(
            where,
            f"has no ' {SHEPHERD_TAG}' step tags (at the end of a line or of the text)",
            field="input",
        )
    solution_start = _solution_start(input_text, tags[0].start())
    if solution_start is None:
        raise ImportFormatError(
            where, "cannot find where the question ends ('Step 1:')", field="input"
        )
    problem = input_text[:solution_start].strip()
    if not problem:
        raise ImportFormatError(where, "the question before 'Step 1:' is empty", field="input")
    step_starts = [solution_start] + [tag.end() for tag in tags[:-1]]
    steps = [
        _STEP_PREFIX.sub("", input_text[begin : tag.start()]).strip()
        for begin, tag in zip(step_starts, tags, strict=True)
    ]
    if any(not step for step in steps):
        raise ImportFormatError(where, "a step between tags is empty", field="input")

    ratings = _ratings(label_text, tags, where) if label_text else None
    first_error = (ratings.index(-1) if -1 in ratings else -1) if ratings is not None else None
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=str_id(record, "id", where) or content_id(input_text),
            reference_answer=text(record, "answer", where, required=False),
            generator=text(record, "generator", where, required=False),
            split=options.split or options.default_split,
            label=ParsedLabel(first_error_step=first_error, step_ratings=ratings)
            if ratings
            else None,
        )
    ]


def _solution_start(text: str, first_tag: int) -> int | None:
    """Where the solution's "Step 1:" starts, or None.

    Both the question ("Step 1: mix, Step 2: bake. How long...?") and step 1 itself
    (a model numbering its own plan: "... Step 1: find the rate ...") may say
    "Step 1:". The solution's is the first "Step 1:" (at the start or after
    whitespace) from which step 1 runs to the first tag without passing a marker of a
    later step, since step 2 starts only after that tag; failing that, the first."""
    markers = list(_STEP_MARKER.finditer(text, 0, first_tag))
    ones = [i for i, marker in enumerate(markers) if int(marker.group(1)) == 1]
    for i in ones:
        if all(int(later.group(1)) == 1 for later in markers[i + 1 :]):
            return markers[i].start()
    return markers[ones[0]].start() if ones else None


def _ratings(label_text: str, tags: list[re.Match], where: str) -> list[int | None]:
    """The ``+``/``-`` standing in ``label_text`` where ``input`` has each tag: every
    earlier two-letter tag became one character, so tag k moves k characters left."""
    ratings: list[int | None] = []
    for k, tag in enumerate(tags):
        position = tag.start() + 1 - k
        mark = label_text[position] if position < len(label_text) else ""
        if mark not in ("+", "-"):
            raise ImportFormatError(
                where, f"does not match 'input' at step {k} (expected '+' or '-')", field="label"
            )
        ratings.append(1 if mark == "+" else -1)
    return ratings


def write(
    trace: ExportTrace, first_error_step: int, step_ratings: list[int | None] | None = None
) -> dict[str, Any]:
    completions, flags = truncated(trace.steps, first_error_step)
    body = [f"Step {i}: {step} {SHEPHERD_TAG}\n" for i, step in enumerate(completions, start=1)]
    marks = ["+" if ok else "-" for ok in flags]
    question = trace.problem.strip()
    return {
        "input": f"{question} " + "".join(body),
        "label": f"{question} "
        + "".join(b[: -len(SHEPHERD_TAG) - 1] + m + "\n" for b, m in zip(body, marks, strict=True)),
        "task": trace.split or "",
    }


def parquet_fields() -> list:
    import pyarrow as pa

    return [("input", pa.string()), ("label", pa.string()), ("task", pa.string())]
