"""Generative verifiers: V verifications of one sampled solution, each a verdict with its
token count (the cost of verifying, on the compute axis of :mod:`scoring.curves`).

Two verifiers, both through a completer's ``sample`` (:mod:`scoring.completers`):

- :class:`GenRMBase`, as ``nishadsinghi/sc-genrm-scaling`` at 1d310ee runs GenRM-Base
  (``llmonk/verify/generate_verifications.py``, cited as ``gv:LINE``):

  - the prompt is ``prompts/llama3.1_8b_instruct/genrm_base_zero_shot.txt``
    (:data:`GENRM_BASE_ZERO_SHOT`) filled as ``prepare_prompt`` does (gv:52-95): the
    solution cut after its last ``"</think>\\n\\n"`` (``remove_think_tag_from_solution``,
    on by default, ``llmonk/utils.py:202``), then ``"Question: {}"`` and ``"Solution: {}"``
    replaced in that order (so a question that itself holds ``"Solution: {}"`` is filled
    there too, as in the reference), sent as one user turn with the generation prompt
    (gv:92-93; a chat completer: the server applies the model's chat template);
  - sampling as its README's GenRM-Base command: temperature 0.7, top_p 0.95, up to
    1024 new tokens, ``logprobs=1`` (gv:210-218 send nothing else, so no top_k);
  - p(yes) and p(no) are ``extract_P_yes`` (gv:105-129): the position of the verdict is
    0 (a direct verifier) if " Yes"/"Yes" or " No"/"No" is among that position's tokens,
    else -2 (the token before the end-of-sequence token), else -3 (a closing ``**``
    after the verdict); each probability is ``exp`` of the log-probability of that
    token there, None where it is absent (the reference's -1); any failure (no
    log-probabilities, a verification shorter than the position) leaves both None
    (gv:151-154);
  - the text verdict is the reference's regex (``extract_final_verification`` with
    ``check_solution_status``, :func:`scoring.formats.sc_genrm.text_verdict`);
  - the "hybrid" rule that combines them (p(yes), else 1 - p(no), else the text
    verdict) is applied where the curves are computed,
    :func:`scoring.curves.verdict_value`, so what is stored is the three parts.

- :class:`CriticVerifier`: the ProcessBench critic of the ``llm-critic`` adapter
  (:mod:`scoring.adapters.llm_critic`: its prompt, its ``\\boxed{}`` extraction and its
  ``int()``), one verification per critic sample: an index of -1 (no error found) is a
  "correct" verdict, any index of a step is "incorrect", anything else no verdict. It
  gives no p(yes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scoring.completers import Completion
from scoring.montecarlo import Prompt

GENRM_BASE = "genrm-base"
CRITIC = "processbench-critic"
VERIFIERS = (GENRM_BASE, CRITIC)

# prompts/llama3.1_8b_instruct/genrm_base_zero_shot.txt at 1d310ee, byte for byte.
GENRM_BASE_ZERO_SHOT = (
    "You are a math teacher. Grade the Solution, verifying correctness step by step. At the "
    "end of the Solution verification, when you give your final grade, write it in the form "
    "'Verification: Is the answer correct (Yes/No)? X', where X is either Yes or No. \n"
    "Make sure to reason step-by-step about deviations from the correct solution of the "
    "question.\n\nQuestion: {}\n\nSolution: {}\n\nTeacher Verification:\n"
)
THINK_END = "</think>\n\n"
# The README's GenRM-Base sampling (llmonk/verify/README.md, "GenRM-Base on MATH").
GENRM_BASE_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024}
GENRM_TOP_LOGPROBS = 1  # its logprobs=1
YES_TOKENS = (" Yes", "Yes")
NO_TOKENS = (" No", "No")


@dataclass(frozen=True)
class VerifierOutput:
    """One verification: its text, the text verdict (None: none found), p(yes)/p(no) at
    the verdict position (None: not given) and the tokens it generated."""

    text: str
    verdict: bool | None
    p_yes: float | None
    p_no: float | None
    tokens: int


class Sampler(Protocol):
    """What a verifier needs of a completer (:class:`scoring.completers.OpenAICompleter`
    and ``TransformersCompleter`` have it)."""

    def sample(
        self, prompt: Prompt, n: int, top_logprobs: int | None = None
    ) -> list[Completion]: ...

    def sample_all(
        self, prompts: Sequence[Prompt], n: int, top_logprobs: int | None = None
    ) -> list[list[Completion]]: ...


@dataclass(frozen=True)
class Candidate:
    """A solution to verify: the problem, the solution's text and its steps."""

    question: str
    solution: str
    steps: tuple[str, ...]


def genrm_prompt(
    question: str,
    solution: str,
    template: str = GENRM_BASE_ZERO_SHOT,
    remove_think_tag: bool = True,
) -> str:
    """``prepare_prompt`` (gv:52-95) without the chat template.

    >>> genrm_prompt("1+1?", "<think>hm</think>\\n\\n2")[-51:]
    'Question: 1+1?\\n\\nSolution: 2\\n\\nTeacher Verification:\\n'
    """
    if remove_think_tag:
        solution = solution.split(THINK_END)[-1]
    if "Question: {}" in template:
        prompt = template.replace("Question: {}", f"Question: {question}")
        return prompt.replace("Solution: {}", f"Solution: {solution}")
    return template.format(question, solution)


def _at(position: dict[str, float]) -> tuple[float | None, float | None]:
    # gv:106-114: every token at the position is looked at; a later match overwrites
    p_yes = p_no = None
    for token, logprob in position.items():
        if token in YES_TOKENS:
            p_yes = math.exp(logprob)
        if token in NO_TOKENS:
            p_no = math.exp(logprob)
    return p_yes, p_no


def verdict_probabilities(
    positions: Sequence[dict[str, float]] | None,
) -> tuple[float | None, float | None]:
    """``extract_P_yes`` (gv:105-129) under ``prepare_yaml``'s ``except`` (gv:151-154):
    (p(yes), p(no)), None for a token not found.

    >>> verdict_probabilities([{"The": -0.1}, {" Yes": math.log(0.75), " No": -2.0}, {"": 0.0}])
    (0.75, 0.1353352832366127)
    >>> verdict_probabilities([{" No": -0.5}, {"x": 0.0}])  # a direct verifier: position 0
    (None, 0.6065306597126334)
    >>> verdict_probabilities(None)
    (None, None)
    """
    try:
        p_yes, p_no = _at(positions[0])  # type: ignore[index]
        if p_yes is not None or p_no is not None:
            return p_yes, p_no
        p_yes, p_no = _at(positions[-2])  # type: ignore[index]
        if p_yes is None and p_no is None:
            p_yes, p_no = _at(positions[-3])  # type: ignore[index]
        return p_yes, p_no
    except (IndexError, TypeError, AttributeError):
        return None, None


class GenRMBase:
    """GenRM-Base verifications (see the module's docstring)."""

    name = GENRM_BASE

    def __init__(
        self,
        completer: Sampler,
        *,
        template: str = GENRM_BASE_ZERO_SHOT,
        top_logprobs: int = GENRM_TOP_LOGPROBS,
        remove_think_tag: bool = True,
    ) -> None:
        self.completer = completer
        self.template = template
        self.top_logprobs = top_logprobs
        self.remove_think_tag = remove_think_tag

    def prompt(self, question: str, solution: str, steps: Sequence[str] = ()) -> Prompt:
        text = genrm_prompt(question, solution, self.template, self.remove_think_tag)
        return Prompt(text=text, problem=text, prefix="")

    def read(self, completion: Completion, n_steps: int) -> VerifierOutput:
        from scoring.formats.sc_genrm import text_verdict

        p_yes, p_no = verdict_probabilities(completion.top_logprobs)
        return VerifierOutput(
            completion.text, text_verdict(completion.text), p_yes, p_no, completion.tokens
        )

    def verify_all(self, candidates: Sequence[Candidate], n: int) -> list[list[VerifierOutput]]:
        """``n`` verifications of each candidate, one request per candidate (concurrent
        on a server completer)."""
        return _verify_all(self, candidates, n, self.top_logprobs)


class CriticVerifier:
    """The ProcessBench critic as a verifier (see the module's docstring). ``steps`` are
    the solution's paragraphs as stored."""

    name = CRITIC

    def __init__(self, completer: Sampler) -> None:
        self.completer = completer

    def prompt(self, question: str, solution: str, steps: Sequence[str]) -> Prompt:
        from scoring.adapters.llm_critic import critique_prompt
        from scoring.types import Trace

        text = critique_prompt(Trace(problem=question, steps=tuple(steps)))
        return Prompt(text=text, problem=text, prefix="")

    def read(self, completion: Completion, n_steps: int) -> VerifierOutput:
        from scoring.adapters.llm_critic import as_index, extract_answer

        index = as_index(extract_answer(completion.text))
        verdict = None if index is None or not -1 <= index < n_steps else index == -1
        return VerifierOutput(completion.text, verdict, None, None, completion.tokens)

    def verify_all(self, candidates: Sequence[Candidate], n: int) -> list[list[VerifierOutput]]:
        """``n`` critiques of each candidate, one request per candidate."""
        return _verify_all(self, candidates, n, None)


def _verify_all(
    verifier: GenRMBase | CriticVerifier,
    candidates: Sequence[Candidate],
    n: int,
    top_logprobs: int | None,
) -> list[list[VerifierOutput]]:
    if not candidates:
        return []
    prompts = [verifier.prompt(c.question, c.solution, c.steps) for c in candidates]
    answers = verifier.completer.sample_all(prompts, n, top_logprobs)
    return [
        [verifier.read(completion, len(candidate.steps)) for completion in completions]
        for candidate, completions in zip(candidates, answers, strict=True)
    ]


def make_verifier(kind: str, completer: Any, **options: Any) -> GenRMBase | CriticVerifier:
    """A verifier of ``kind`` (:data:`VERIFIERS`) over ``completer``."""
    if kind == GENRM_BASE:
        return GenRMBase(completer, **options)
    if kind == CRITIC:
        if options:
            raise ValueError(f"the critic takes no options, got {sorted(options)}")
        return CriticVerifier(completer)
    raise ValueError(f"verifier must be one of {VERIFIERS}, got {kind!r}")
