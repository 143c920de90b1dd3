"""PRM800K phase-1 labels re-shaped one row per rated candidate step:
``{instruction, responses[], next_response, answer, is_human_response, is_solution,
is_preferred_response, rating}``. Read only.
"""

from __future__ import annotations

import json

from scoring.formats.base import (
    ImportFormatError,
    ParsedLabel,
    ParsedTrace,
    ParseOptions,
    content_id,
    no_empty_steps,
    optional_bool,
    string_list,
    text,
)
from scoring.labels import RATINGS


def read(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """A row judges only its last step: ``responses`` are the steps accepted before it
    (chosen or written by the labeller, so rated 0 or +1, never -1, but which one
    the row does not say) and ``next_response`` the candidate it rates. It becomes
    one trace, ``responses + [next_response]``, with the earlier steps unrated
    (``None``) and the last rated as in the row: -1 puts the first error at the last
    step; 0 (fine, no progress) or +1 means no step of the trace is wrong (first
    error -1); a null rating gives no label. The row carries no id, so the id hashes
    the whole row: re-imports skip what is there, and a row repeated verbatim in the
    file is imported once and counted as a duplicate."""
    problem = text(record, "instruction", where)
    earlier = string_list(record, "responses", where)
    no_empty_steps(earlier, where, "responses")
    steps = [*earlier, text(record, "next_response", where)]
    rating = record.get("rating")
    if rating is not None and (isinstance(rating, bool) or rating not in RATINGS):
        raise ImportFormatError(where, f"{rating!r} is not -1, 0, 1 or null", field="rating")
    flags = {
        key: optional_bool(record, key, where)
        for key in ("is_human_response", "is_solution", "is_preferred_response")
    }
    label = None
    if rating is not None:
        label = ParsedLabel(
            first_error_step=len(earlier) if rating == -1 else -1,
            step_ratings=[None] * len(earlier) + [rating],
        )
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=content_id(json.dumps(record, sort_keys=True, default=str)),
            generator="prm800k",
            split=options.split or options.default_split,
            final_answer=text(record, "answer", where, required=False),
            metadata=flags,
            label=label,
        )
    ]
