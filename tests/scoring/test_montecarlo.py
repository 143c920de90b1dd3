"""``scoring.montecarlo`` with scripted completers: no model, no network."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from scoring.montecarlo import (
    PROBLEM_ONLY,
    Prompt,
    PromptTemplate,
    Rollouts,
    binary_search_bound,
    estimate,
    estimate_binary,
    estimate_exhaustive,
    first_error_at_threshold,
    progress_values,
)
from scoring.types import Trace


def make_trace(n_steps: int, trace_id: str = "t") -> Trace:
    return Trace(
        problem="What is 6 * 7?",
        steps=tuple(f"Step {i}: working." for i in range(n_steps)),
        reference_answer="42",
        id=trace_id,
    )


class Scripted:
    """Answers by prefix length: from a prefix of ``k`` steps (0 = the problem alone),
    ``correct[k]`` of the n completions end in \\boxed{42}, the rest in \\boxed{41}.
    Records how many prompts and completions it was asked for."""

    def __init__(self, correct_by_length: Sequence[int], tokens: int = 3) -> None:
        self.correct = list(correct_by_length)
        self.tokens = tokens
        self.asked: list[int] = []

    def complete(self, prompts: Sequence[Prompt], n: int) -> list[Rollouts]:
        out = []
        for prompt in prompts:
            length = prompt.prefix.count("Step ")
            self.asked.append(length)
            good = min(n, self.correct[length])
            texts = ["so \\boxed{42}"] * good + ["so \\boxed{41}"] * (n - good)
            out.append(Rollouts(tuple(texts), tokens=self.tokens * n))
        return out


def monotone_cases(max_steps: int = 9, n: int = 4):
    """Every first error k in [0, M] for M up to ``max_steps``: before k, a varying number
    (1..n) of rollouts succeed; from k on, none."""
    for m in range(1, max_steps + 1):
        for k in range(m + 1):
            # prefix length L covers steps 0..L-1; L <= k: every step in it is correct
            correct = [(1 + (length * 7 + k) % n) if length <= k else 0 for length in range(m + 1)]
            yield m, k, correct


@pytest.mark.parametrize("n", [1, 4])
def test_binary_search_finds_the_exhaustive_first_error_on_every_monotone_case(n: int) -> None:
    checked = 0
    for m, k, correct in monotone_cases(n=n):
        trace = make_trace(m)
        full = estimate_exhaustive(trace, Scripted(correct), n)
        scripted = Scripted(correct)
        binary = estimate_binary(trace, scripted, n)
        expected = k if k < m else -1
        assert full.first_error == binary.first_error == expected, (m, k)
        assert full.rollouts == n * (m + 1)  # every step and the problem alone
        assert binary.rollouts == n * len(scripted.asked)
        assert binary.rollouts <= n * (math.ceil(math.log2(m)) + 1), (m, k, binary.rollouts)
        assert binary.rollouts <= binary_search_bound(n, m)
        # what binary search evaluated agrees with the exhaustive values
        for value, exact in zip(binary.mc, full.mc, strict=True):
            assert value is None or value == exact
        checked += 1
    assert checked == sum(m + 1 for m in range(1, 10))


def test_binary_search_beats_exhaustive_on_long_traces() -> None:
    trace = make_trace(16)
    correct = [4] * 11 + [0] * 6  # first error at step 10
    full, binary = (
        estimate(trace, Scripted(correct), 8, mode=mode) for mode in ("exhaustive", "binary")
    )
    assert full.first_error == binary.first_error == 10
    assert (full.rollouts, binary.rollouts) == (8 * 17, 8 * 4)  # mids 8, 12, 10, 9
    assert binary.mc.count(None) == 16 - 4


def test_progress_values_on_the_worked_example() -> None:
    # The module docstring's example: N = 4, the problem alone 2/4, step 0 3/4, then 0/4.
    scripted = Scripted([2, 3, 0, 0])
    result = estimate_exhaustive(make_trace(3), scripted, 4, keep_rollouts=True)
    assert result.problem_value == 0.5
    assert result.mc == (0.75, 0.0, 0.0)
    assert result.hard == (True, False, False)
    assert result.progress == (0.25, -0.75, 0.0)
    assert result.first_error == 1
    assert result.rollouts == 16 and result.tokens == 16 * 3
    assert result.step_rollouts == (4, 4, 4) and result.step_tokens == (12, 12, 12)
    assert [s.step_index for s in result.samples].count(PROBLEM_ONLY) == 4
    assert sum(s.correct for s in result.samples) == 2 + 3
    assert {s.answer for s in result.samples} == {"42", "41"}

    binary = estimate_binary(make_trace(3), Scripted([2, 3, 0, 0]), 4)
    assert binary.mc == (0.75, 0.0, None)
    assert binary.progress == (None, -0.75, None)
    assert binary.first_error == 1 and binary.rollouts == 8


def test_progress_is_the_change_in_value() -> None:
    assert progress_values([0.5, 0.5, 1.0], 0.25) == [0.25, 0.0, 0.5]
    assert progress_values([None, 0.5], 0.25) == [None, None]
    assert first_error_at_threshold([0.9, 0.6, 0.2], 0.5) == 2
    assert first_error_at_threshold([0.9, None, 0.6], 0.5) == -1


def test_answers_are_graded_with_scoring_grading() -> None:
    """Equivalent forms count as right (math-verify), and a completion with no answer
    falls back to the prefix's own."""

    class Forms:
        def complete(self, prompts, n):
            return [Rollouts(("\\boxed{\\frac{84}{2}}", "the answer is 42.0", "", "\\boxed{4}"))]

    trace = Trace("6*7?", ("6*7 = 42, so \\boxed{42}",), reference_answer="42", id="g")
    result = estimate_exhaustive(trace, Forms(), 4, problem_value=False, keep_rollouts=True)
    assert [s.correct for s in result.samples] == [True, True, True, False]
    assert result.mc == (0.75,)


def test_the_prompt_template_renders_the_prefix() -> None:
    template = PromptTemplate("Q: {problem}\nA: {prefix}", separator="\n")
    seen: list[Prompt] = []

    class Recording:
        def complete(self, prompts, n):
            seen.extend(prompts)
            return [Rollouts(("\\boxed{1}",) * n) for _ in prompts]

    trace = Trace("1+0?", ("a", "b"), reference_answer="1", id="p")
    estimate_exhaustive(trace, Recording(), 2, template=template)
    assert [p.text for p in seen] == ["Q: 1+0?\nA: ", "Q: 1+0?\nA: a\n", "Q: 1+0?\nA: a\nb\n"]
    assert seen[2].prefix == "a\nb\n" and seen[2].problem == "1+0?"
    with pytest.raises(ValueError, match="prefix"):
        PromptTemplate("no placeholders")
    with pytest.raises(ValueError, match="only"):
        PromptTemplate("{problem.__class__} {prefix}")
    assert PromptTemplate("{{x}} {problem} {prefix}").render("p", ["a"]) == "{x} p a\n\n"


def test_it_refuses_a_trace_without_a_reference_answer() -> None:
    with pytest.raises(ValueError, match="reference answer"):
        estimate_exhaustive(Trace("q", ("a",), id="x"), Scripted([1, 1]), 2)
    with pytest.raises(ValueError, match="mode"):
        estimate(make_trace(2), Scripted([1, 1, 1]), 2, mode="random")


def test_the_modules_import_without_django_celery_or_torch() -> None:
    import json
    import subprocess
    import sys

    probe = (
        "import sys, json, scoring.montecarlo, scoring.completers\n"
        "print(json.dumps([m for m in ('django', 'celery', 'torch', 'transformers', 'annotator')"
        " if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
