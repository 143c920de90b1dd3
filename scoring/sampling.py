"""Sampled solutions: N completions of one problem from a completer, each graded by the
project's grading (:mod:`scoring.grading`) and split into steps, with its token count.

The pool that self-consistency votes over and a verifier verifies (:mod:`scoring.curves`).
The prompt is a template with ``{problem}``; the default asks for a boxed answer as the
project's other prompts do (:data:`scoring.montecarlo.DEFAULT_TEMPLATE`). Each distinct
answer of a problem is graded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scoring.grading import answers_match, extract_answer
from scoring.montecarlo import Prompt
from scoring.steps import split_steps
from scoring.verifiers import Sampler

SOLVE_TEMPLATE = (
    "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
)


@dataclass(frozen=True)
class Solution:
    """One sampled solution: its text, its steps, its final answer (None: none written),
    whether that matches the reference answer, and the tokens it generated."""

    text: str
    steps: tuple[str, ...]
    answer: str | None
    correct: bool
    tokens: int


def solve_prompt(problem: str, template: str = SOLVE_TEMPLATE) -> Prompt:
    """The prompt of one problem.

    >>> solve_prompt("1+1?").text.splitlines()[0]
    '1+1?'
    """
    text = template.format(problem=problem)
    return Prompt(text=text, problem=text, prefix="")


def gold_answer(reference: str) -> str:
    """The answer to grade against: a GSM8K reference solution's ``#### x`` or a boxed
    one's content, else the reference as it is (as :func:`scoring.grading.grade`)."""
    if "####" in reference or "\\boxed" in reference:
        return extract_answer(reference) or reference
    return reference


def solution_steps(text: str, split: str = "paragraphs") -> tuple[str, ...]:
    """A solution's steps; one that splits into none (an empty completion) is one step
    of its text, so every stored solution has a step to read and to label.

    >>> solution_steps("a\\n\\nb"), solution_steps(" ")
    (('a', 'b'), (' ',))
    """
    return tuple(split_steps(text, split)) or (text,)


def grade_texts(
    texts: list[str], tokens: list[int], reference: str, split: str = "paragraphs"
) -> list[Solution]:
    """Solutions from completion texts: answers extracted, graded once per distinct
    answer, steps split (:func:`solution_steps`)."""
    gold = gold_answer(reference)
    graded: dict[str, bool] = {}
    out = []
    for text, count in zip(texts, tokens, strict=True):
        answer = extract_answer(text)
        if answer is not None and answer not in graded:
            graded[answer] = answers_match(gold, answer)
        out.append(
            Solution(
                text,
                solution_steps(text, split),
                answer,
                answer is not None and graded[answer],
                count,
            )
        )
    return out


def sample_solutions(
    completer: Sampler,
    problems: Sequence[tuple[str, str]],
    n: int,
    *,
    template: str = SOLVE_TEMPLATE,
    split: str = "paragraphs",
) -> list[list[Solution]]:
    """``n`` graded solutions of each ``(problem, reference answer)``, one request per
    problem (concurrent on a server completer); graded here, in the calling thread
    (math-verify's timeout needs the main thread, :mod:`scoring.grading`)."""
    prompts = [solve_prompt(problem, template) for problem, _ in problems]
    answers = completer.sample_all(prompts, n)
    return [
        grade_texts([c.text for c in completions], [c.tokens for c in completions], ref, split)
        for (_, ref), completions in zip(problems, answers, strict=True)
    ]
