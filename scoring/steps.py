"""Splitting a solution into steps, and joining steps back into text.

Every splitter drops empty steps and strips surrounding whitespace, so
``split(join(steps)) == steps`` for steps that are non-empty and stripped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

SHEPHERD_TAG = "ки"

_STEP_MARKER = re.compile(r"(?im)^\s*step\s*\d+\s*[:.]\s*")


def split_paragraphs(text: str) -> list[str]:
    """Split on blank lines: ``"a\\n\\nb"`` -> ``["a", "b"]``."""
    return [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]


def split_lines(text: str) -> list[str]:
    """Split on single newlines: ``"a\\nb"`` -> ``["a", "b"]``."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def split_step_markers(text: str) -> list[str]:
    """Split on ``Step N:`` markers, dropping the markers.

    ``"Step 1: a\\nStep 2: b"`` -> ``["a", "b"]``. Text before the first marker,
    if any, is kept as its own step.
    """
    parts = _STEP_MARKER.split(text)
    return [part.strip() for part in parts if part.strip()]


def split_shepherd(text: str) -> list[str]:
    """Split Math-Shepherd text on its ``ки`` step tags (also ``+``/``-`` labelled text)."""
    return [part.strip() for part in text.split(SHEPHERD_TAG) if part.strip()]


SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "paragraphs": split_paragraphs,
    "lines": split_lines,
    "step-markers": split_step_markers,
    "shepherd": split_shepherd,
}


def split_steps(text: str, how: str = "paragraphs") -> list[str]:
    """Split ``text`` with the splitter named ``how`` (one of :data:`SPLITTERS`)."""
    try:
        splitter = SPLITTERS[how]
    except KeyError:
        raise ValueError(
            f"unknown step splitter {how!r}; choose one of {sorted(SPLITTERS)}"
        ) from None
    return splitter(text)


def join_steps(steps: list[str], how: str = "paragraphs") -> str:
    """The inverse of :func:`split_steps` for clean steps."""
    if how == "paragraphs":
        return "\n\n".join(steps)
    if how == "lines":
        return "\n".join(steps)
    if how == "step-markers":
        return "\n".join(f"Step {i}: {step}" for i, step in enumerate(steps, start=1))
    if how == "shepherd":
        return "".join(f"{step} {SHEPHERD_TAG}\n" for step in steps)
    raise ValueError(f"unknown step splitter {how!r}; choose one of {sorted(SPLITTERS)}")
