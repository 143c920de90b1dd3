"""Plain data passed in and out of :mod:`scoring`: frozen dataclasses, no torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Trace:
    """A solution split into steps.

    ``first_error_step`` is the 0-based index of the earliest wrong step (-1: all steps
    correct, None: unknown). ``step_labels`` holds per-step correctness where known.
    """

    problem: str
    steps: tuple[str, ...]
    reference_answer: str | None = None
    id: str = ""
    split: str = ""
    first_error_step: int | None = None
    step_labels: tuple[bool | None, ...] | None = None
    final_answer_correct: bool | None = None

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples, so a Trace stays hashable.
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))
        if self.step_labels is not None and not isinstance(self.step_labels, tuple):
            object.__setattr__(self, "step_labels", tuple(self.step_labels))

    def prefix(self, n_steps: int) -> Trace:
        """The same trace cut after its first ``n_steps`` steps."""
        return Trace(problem=self.problem, steps=self.steps[:n_steps], id=self.id, split=self.split)


@dataclass(frozen=True)
class StepScores:
    """One score per step of one trace, higher = more likely correct, in [0, 1] where the
    adapter yields probabilities. NaN marks a step the scorer gave no verdict on.

    ``raw`` holds an adapter's unsquashed values where they differ from ``scores`` (implicit
    PRM: cumulative q_t); ``details`` holds anything else worth keeping (critic samples, the
    arithmetic claims that failed).
    """

    trace_id: str
    scores: tuple[float, ...]
    adapter: str = ""
    model: str = ""
    n_tokens: int = 0
    seconds: float = 0.0
    raw: tuple[float, ...] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


# The first error of a trace with a NaN score (no verdict) before any step falls below
# the threshold: never a label's step index nor -1 ("no error"), so it counts as wrong.
NO_PREDICTION = -2
