"""Monte-Carlo step labels: roll out completions from each step prefix and grade them.

Three published procedures, on one completer interface (:class:`Completer`):

- **Math-Shepherd** (Wang et al. 2024, *Math-Shepherd: Verify and Reinforce LLMs Step-by-step
  without Human Annotations*, arXiv:2312.08935, section 3.3 "Automatic Process Annotation"):
  for each step ``s_i`` a "completer" decodes N subsequent paths from the prefix
  ``(p, s_1, ..., s_i)``, each ending in an answer ``a_j``; against the gold answer ``a*``
  the hard estimate is ``y_HE = 1 if any a_j == a* else 0`` and the soft estimate
  ``y_SE = sum_j [a_j == a*] / N``. :func:`estimate_exhaustive` does this for every step
  (``mc`` = the soft estimate, ``hard`` = the hard one).
- **OmegaPRM** (Luo et al. 2024, *Improve Mathematical Reasoning in Language Models by
  Automated Process Supervision*, arXiv:2406.06592, section 3.2 "Binary search"): the
  Monte-Carlo estimate ``MC(q, x_{1:m})`` is the share of rollouts from the prefix that
  reach the answer; "if MC > 0 the first m steps are taken as correct and the error lies
  after m, else it lies in the first m steps", so a binary search over the midpoint finds
  the first error with ``O(k log M)`` rollouts. It assumes monotonicity: every prefix
  before the first error can still reach the answer, none from it on can.
  :func:`estimate_binary` keeps ``[lo, hi)`` as the range that holds the first error
  (``hi = M`` meaning none) and so evaluates at most ``ceil(log2(M + 1)) <= ceil(log2 M)
  + 1`` prefixes: at most ``N * (ceil(log2 M) + 1)`` rollouts against Math-Shepherd's
  ``N * M``.
- **PAV** (Setlur et al. 2024, *Rewarding Progress: Scaling Automated Process Verifiers
  for LLM Reasoning*, arXiv:2410.08146, section 3, eq. 2): a step's progress is its
  advantage under the prover, ``A(s_h, a_h) = Q(s_h, a_h) - V(s_h)``, i.e. the change in
  the chance of reaching the answer: ``progress_i = MC_i - MC_{i-1}``, where ``MC_{-1}``
  is the value of the problem alone (rollouts from an empty solution).

A worked example, N = 4 rollouts from each prefix of a 3-step trace whose step 1 is wrong::

    prefix            correct/N   mc     hard    progress
    problem alone     2/4         0.50   -       -
    step 0            3/4         0.75   True    +0.25   (0.75 - 0.50)
    step 1            0/4         0.00   False   -0.75   (0.00 - 0.75)
    step 2            0/4         0.00   False    0.00
    first_error = 1 (the first step with no correct rollout); exhaustive: 16 rollouts

Binary search on the same trace (M = 3, range [0, 3)): mid 1 -> 0/4, range [0, 1);
mid 0 -> 3/4, range [1, 1): first error 1 after 8 rollouts; ``mc = [0.75, 0.0, None]``.

A rollout's answer is the final answer of its completion (``scoring.grading``); a
completion that writes none (the prefix already ended the solution) falls back to the
prefix's own answer. Grading is memoised per trace: many rollouts repeat an answer.
This module is pure Python: completers (``scoring.completers``) do the network or the GPU.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from scoring.grading import answers_match, extract_answer
from scoring.types import Trace

EXHAUSTIVE = "exhaustive"
BINARY = "binary"
MODES = (EXHAUSTIVE, BINARY)

PROBLEM_ONLY = -1  # the "step index" of rollouts from the problem alone (MC_{-1})

DEFAULT_TEMPLATE = (
    "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n\n"
    "{prefix}"
)


@dataclass(frozen=True)
class PromptTemplate:
    """How a problem and a step prefix become a prompt: ``text`` with ``{problem}`` and
    ``{prefix}``; the prefix is the steps joined by ``separator``, followed by one more
    separator so the completion starts a new step (empty for the problem alone).

    >>> PromptTemplate("Q: {problem}\\nA: {prefix}").render("1+1?", ["1+1=2."])
    'Q: 1+1?\\nA: 1+1=2.\\n\\n'
    """

    text: str = DEFAULT_TEMPLATE
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        # Only the two plain fields: str.format would also resolve "{problem.__class__}"
        # and the like, which must not leak into a prompt sent to a server.
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(self.text)
            if name is not None
        ]
        if any(
            spec or conversion or name not in ("problem", "prefix")
            for name, spec, conversion in fields
        ):
            raise ValueError(
                "a prompt template takes only {problem} and {prefix} (double other braces)"
            )
        if {name for name, _, _ in fields} != {"problem", "prefix"}:
            raise ValueError("a prompt template needs both {problem} and {prefix}")

    def prefix(self, steps: Sequence[str]) -> str:
        return "".join(step + self.separator for step in steps)

    def render(self, problem: str, steps: Sequence[str]) -> str:
        return self.text.format(problem=problem, prefix=self.prefix(steps))


@dataclass(frozen=True)
class Prompt:
    """One rollout request: the rendered text, and the parts a chat endpoint needs
    (the user turn and the assistant's prefix to continue)."""

    text: str
    problem: str
    prefix: str


@dataclass(frozen=True)
class Rollouts:
    """The N completions of one prompt and the tokens they generated together."""

    texts: tuple[str, ...]
    tokens: int = 0


class Completer(Protocol):
    """Anything that completes prompts: ``complete(prompts, n)`` returns, per prompt, n
    completions (a server completer sends the prompts concurrently)."""

    def complete(self, prompts: Sequence[Prompt], n: int) -> list[Rollouts]: ...


@dataclass(frozen=True)
class Rollout:
    """One graded completion, kept for inspection."""

    step_index: int  # PROBLEM_ONLY for rollouts from the problem alone
    text: str
    answer: str | None
    correct: bool


@dataclass(frozen=True)
class MCResult:
    """Per-step Monte-Carlo estimates of one trace; ``None`` where binary search did not
    evaluate a step. ``first_error`` is -1 when every step can still reach the answer."""

    id: str
    mc: tuple[float | None, ...]
    hard: tuple[bool | None, ...]
    progress: tuple[float | None, ...]
    first_error: int
    rollouts: int
    tokens: int
    problem_value: float | None = None
    step_rollouts: tuple[int, ...] = ()
    step_tokens: tuple[int, ...] = ()
    samples: tuple[Rollout, ...] = field(default=(), repr=False)

    def as_record(self) -> dict:
        """The JSONL line of ``python -m scoring mc``."""
        return {
            "id": self.id,
            "mc": list(self.mc),
            "hard": list(self.hard),
            "progress": list(self.progress),
            "first_error": self.first_error,
            "rollouts": self.rollouts,
            "tokens": self.tokens,
            "problem_value": self.problem_value,
            "step_rollouts": list(self.step_rollouts),
            "step_tokens": list(self.step_tokens),
        }


def progress_values(mc: Sequence[float | None], problem_value: float | None) -> list[float | None]:
    """PAV's progress ``MC_i - MC_{i-1}`` with ``MC_{-1}`` the problem's own value; None
    where either side is unknown.

    >>> progress_values([0.75, 0.0, 0.0], 0.5)
    [0.25, -0.75, 0.0]
    """
    previous = [problem_value, *mc[:-1]]
    return [
        None if value is None or before is None else value - before
        for value, before in zip(mc, previous, strict=True)
    ]


def first_error_from_hard(hard: Sequence[bool | None]) -> int:
    """The first step no rollout recovers from; -1 if there is none.

    >>> first_error_from_hard([True, False, False]), first_error_from_hard([True, True])
    (1, -1)
    """
    for index, ok in enumerate(hard):
        if ok is False:
            return index
    return -1


def first_error_at_threshold(mc: Sequence[float | None], threshold: float) -> int:
    """The soft label's first error: the first step whose MC value is below ``threshold``
    (unevaluated steps are skipped); -1 if none.

    >>> first_error_at_threshold([0.9, 0.4, 0.0], 0.5)
    1
    """
    for index, value in enumerate(mc):
        if value is not None and value < threshold:
            return index
    return -1


def binary_search_bound(n: int, n_steps: int) -> int:
    """The most rollouts binary search spends on ``n_steps`` steps: ``n * (ceil(log2
    (M + 1)))``, which is at most ``n * (ceil(log2 M) + 1)``."""
    return n * math.ceil(math.log2(n_steps + 1)) if n_steps else 0


class _Estimator:
    """Rolls out and grades prefixes of one trace, counting rollouts and tokens per step."""

    def __init__(
        self,
        trace: Trace,
        completer: Completer,
        n: int,
        template: PromptTemplate,
        keep_rollouts: bool,
        grade: Callable[[str, str | None], bool],
    ) -> None:
        if not trace.reference_answer:
            raise ValueError(f"trace {trace.id!r} has no reference answer to grade against")
        if n < 1:
            raise ValueError("n must be at least 1")
        self.trace = trace
        self.completer = completer
        self.n = n
        self.template = template
        self.keep_rollouts = keep_rollouts
        self.grade = grade
        self.values: dict[int, float] = {}
        self.rollouts: dict[int, int] = {}
        self.tokens: dict[int, int] = {}
        self.samples: list[Rollout] = []
        self._graded: dict[str | None, bool] = {}

    def prompt(self, index: int) -> Prompt:
        steps = self.trace.steps[: index + 1]
        return Prompt(
            self.template.render(self.trace.problem, steps),
            self.trace.problem,
            self.template.prefix(steps),
        )

    def evaluate(self, indexes: Sequence[int]) -> None:
        """MC values of the prefixes ending at ``indexes`` (one completer call)."""
        results = self.completer.complete([self.prompt(i) for i in indexes], self.n)
        if len(results) != len(indexes):
            raise RuntimeError(f"the completer answered {len(results)} of {len(indexes)} prompts")
        for index, result in zip(indexes, results, strict=True):
            if len(result.texts) != self.n:
                raise RuntimeError(f"asked for {self.n} completions, got {len(result.texts)}")
            fallback = extract_answer(self.template.prefix(self.trace.steps[: index + 1]))
            correct = 0
            for text in result.texts:
                answer = extract_answer(text) or fallback
                ok = self._is_correct(answer)
                correct += ok
                if self.keep_rollouts:
                    self.samples.append(Rollout(index, text, answer, ok))
            self.values[index] = correct / self.n
            self.rollouts[index] = self.rollouts.get(index, 0) + self.n
            self.tokens[index] = self.tokens.get(index, 0) + result.tokens

    def _is_correct(self, answer: str | None) -> bool:
        if answer not in self._graded:
            self._graded[answer] = self.grade(self.trace.reference_answer or "", answer)
        return self._graded[answer]

    def result(self) -> MCResult:
        m = len(self.trace.steps)
        mc = tuple(self.values.get(i) for i in range(m))
        hard = tuple(None if v is None else v > 0 for v in mc)
        problem_value = self.values.get(PROBLEM_ONLY)
        return MCResult(
            id=self.trace.id,
            mc=mc,
            hard=hard,
            progress=tuple(progress_values(mc, problem_value)),
            first_error=first_error_from_hard(hard),
            rollouts=sum(self.rollouts.values()),
            tokens=sum(self.tokens.values()),
            problem_value=problem_value,
            step_rollouts=tuple(self.rollouts.get(i, 0) for i in range(m)),
            step_tokens=tuple(self.tokens.get(i, 0) for i in range(m)),
            samples=tuple(self.samples),
        )


def estimate_exhaustive(
    trace: Trace,
    completer: Completer,
    n: int,
    *,
    template: PromptTemplate = PromptTemplate(),
    problem_value: bool = True,
    keep_rollouts: bool = False,
    grade: Callable[[str, str | None], bool] = answers_match,
) -> MCResult:
    """Math-Shepherd's estimation: N rollouts from every prefix (and, with
    ``problem_value``, from the problem alone, for PAV's ``MC_{-1}``), all prompts in one
    completer call so a server completer has them all in flight."""
    estimator = _Estimator(trace, completer, n, template, keep_rollouts, grade)
    indexes = list(range(len(trace.steps)))
    estimator.evaluate(([PROBLEM_ONLY] if problem_value else []) + indexes)
    return estimator.result()


def estimate_binary(
    trace: Trace,
    completer: Completer,
    n: int,
    *,
    template: PromptTemplate = PromptTemplate(),
    keep_rollouts: bool = False,
    grade: Callable[[str, str | None], bool] = answers_match,
) -> MCResult:
    """OmegaPRM's binary search for the first error (see the module docstring).

    The invariant: the first error lies in ``[lo, hi)``, or there is none when the
    range closes at ``M``. A prefix with a correct rollout (MC > 0) moves ``lo`` past
    it; one without moves ``hi`` onto it. Steps never evaluated stay ``None``."""
    estimator = _Estimator(trace, completer, n, template, keep_rollouts, grade)
    lo, hi = 0, len(trace.steps)
    while lo < hi:
        mid = (lo + hi) // 2
        estimator.evaluate([mid])
        if estimator.values[mid] > 0:
            lo = mid + 1
        else:
            hi = mid
    result = estimator.result()
    first_error = lo if lo < len(trace.steps) else -1
    # The search's answer is the first error; any evaluated step agrees with it under
    # monotonicity, and without monotonicity the search is what OmegaPRM reports.
    return replace(result, first_error=first_error)


def estimate(
    trace: Trace, completer: Completer, n: int, mode: str = EXHAUSTIVE, **kwargs
) -> MCResult:
    """``estimate_exhaustive`` or ``estimate_binary`` by ``mode``."""
    if mode == EXHAUSTIVE:
        return estimate_exhaustive(trace, completer, n, **kwargs)
    if mode == BINARY:
        kwargs.pop("problem_value", None)
        return estimate_binary(trace, completer, n, **kwargs)
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
