"""``llm-critic``: a chat LLM asked for the earliest wrong paragraph (ProcessBench protocol).

The solution is shown as ``<paragraph_i>`` blocks with ProcessBench's critique template;
the answer is the integer in the last ``\\boxed{}`` (-1: no error).

Sampling as in ProcessBench's ``run_eval.py``: greedy with up to 8192 new tokens (reasoning
critics cut off earlier never write their ``\\boxed{}``), or for voting n samples at
temperature 1.0, top_p 0.9 and a majority vote over the samples' boxed answers. As there,
every boxed answer votes, an out-of-range index or a non-integer one included, and only
samples without a ``\\boxed{}`` abstain; a winner that is not an index in range is no
usable answer. (Their Qwen2.5-Math critics sampled at 0.7 / top_p 0.8 / top_k 20: pass
``temperature`` and ``top_p`` for those.)

Step scores encode the voted index: 1.0 before it, 0.0 from it on, all 1.0 for -1, and NaN
when there is no usable answer (ProcessBench counts that as wrong in either split).
``details`` keeps every sample's answer and the winner.

Backends: ``transformers`` generation (this module imports torch lazily) and any
OpenAI-compatible server (vLLM, SGLang) through ``/chat/completions`` with the standard
library's ``urllib``. Not a causal per-step scorer: each trace is one generation.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any

from scoring.grading import last_boxed
from scoring.types import StepScores, Trace

DEFAULT_MAX_TOKENS = 8192  # ProcessBench's run_eval (32768 for QwQ)
VOTING_TEMPERATURE = 1.0
VOTING_TOP_P = 0.9

CRITIQUE_TEMPLATE = """The following is a math problem and a solution (split into paragraphs, enclosed with tags and indexed from 0):

[Math Problem]

{problem}

[Solution]

{tagged_response}

Your task is to review and critique the solution paragraph by paragraph. Once you identify an error in a paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return the index of -1 (which typically denotes "not found").

Please put your final answer (i.e., the index) in \\boxed{{}}."""


def critique_prompt(trace: Trace) -> str:
    tagged = "\n\n".join(
        f"<paragraph_{i}>\n{step}\n</paragraph_{i}>" for i, step in enumerate(trace.steps)
    )
    return CRITIQUE_TEMPLATE.format(problem=trace.problem, tagged_response=tagged)


def parse_index(completion: str) -> int | None:
    """The integer in the last ``\\boxed{}``, or None.

    >>> parse_index("... so the earliest error is in paragraph \\\\boxed{2}.")
    2
    """
    boxed = last_boxed(completion)
    if boxed is None:
        return None
    match = re.fullmatch(r"\s*(?:\\text\{)?\s*(-?\d+)\s*\}?\s*", boxed)
    return int(match.group(1)) if match else None


def parse_answer(completion: str) -> int | str | None:
    """What a sample votes for: the integer in its last ``\\boxed{}``, else that box's text,
    or None without a box (no vote).

    >>> parse_answer("\\\\boxed{7}"), parse_answer("\\\\boxed{two}"), parse_answer("none")
    (7, 'two', None)
    """
    index = parse_index(completion)
    return index if index is not None else last_boxed(completion)


def vote(answers: Sequence[int | str | None]) -> int | str | None:
    """Majority answer among samples that gave one (first seen wins ties), as ProcessBench's
    ``Counter(preds).most_common(1)``: out-of-range and non-integer answers vote too.

    >>> vote([7, 7, 1, None])
    7
    """
    given = [a for a in answers if a is not None]
    if not given:
        return None
    return Counter(given).most_common(1)[0][0]


def scores_for(index: int | str | None, n_steps: int) -> tuple[float, ...]:
    """Step scores for a voted answer; NaN unless it is an index in [-1, n_steps)."""
    if not isinstance(index, int) or not -1 <= index < n_steps:
        return (math.nan,) * n_steps
    if index == -1:
        return (1.0,) * n_steps
    return tuple(1.0 if i < index else 0.0 for i in range(n_steps))


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server (vLLM, SGLang) at ``base_url``."""

    def __init__(
        self, base_url: str, model: str, api_key: str = "EMPTY", timeout_s: float = 600
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s

    def generate(
        self, prompt: str, n: int, temperature: float, max_tokens: int, top_p: float = 1.0
    ) -> list[str]:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "n": n,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = json.load(response)
        return [choice["message"]["content"] or "" for choice in payload["choices"]]


class TransformersBackend:
    """Local generation with ``model.generate`` on the chat-templated prompt."""

    def __init__(self, path: str, device: str | None = None, dtype: Any = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from scoring.adapters.base import resolve_device_dtype

        device, dtype = resolve_device_dtype(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()

    def chat_ids(self, prompt: str) -> list[int]:
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            tokenize=True,
            add_generation_prompt=True,
            return_dict=False,
        )

    def generate(
        self, prompt: str, n: int, temperature: float, max_tokens: int, top_p: float = 1.0
    ) -> list[str]:
        import torch

        ids = torch.tensor([self.chat_ids(prompt)], device=self.model.device)  # (1, T)
        sample = temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=top_p if sample else None,
                top_k=None,
                num_return_sequences=n,
                max_new_tokens=max_tokens,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )  # (n, T + new)
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


class LLMCritic:
    """``temperature`` and ``top_p`` default to ProcessBench's: greedy for n = 1, else
    1.0 and 0.9."""

    name = "llm-critic"

    def __init__(
        self,
        backend: Any,
        model_name: str = "",
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        top_p: float | None = None,
    ) -> None:
        voting = n > 1
        if temperature is None:
            temperature = VOTING_TEMPERATURE if voting else 0.0
        if top_p is None:
            top_p = VOTING_TOP_P if voting else 1.0
        if voting and temperature == 0.0:
            raise ValueError(f"n={n} greedy samples would all be the same: set temperature > 0")
        self.backend = backend
        self.model_name = model_name
        self.n = n
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        base_url: str | None = None,
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        top_p: float | None = None,
        device: str | None = None,
        dtype: Any = None,
    ) -> LLMCritic:
        """``path`` is the served model name with ``base_url``, else a local/hub model."""
        backend = (
            OpenAIBackend(base_url, path) if base_url else TransformersBackend(path, device, dtype)
        )
        return cls(backend, path, n, temperature, max_tokens, top_p)

    def score_trace(self, trace: Trace) -> StepScores:
        if not trace.steps:  # nothing to critique
            return StepScores(
                trace_id=trace.id, scores=(), adapter=self.name, model=self.model_name
            )
        completions = self.backend.generate(
            critique_prompt(trace), self.n, self.temperature, self.max_tokens, self.top_p
        )
        answers = [parse_answer(c) for c in completions]
        winner = vote(answers)
        return StepScores(
            trace_id=trace.id,
            scores=scores_for(winner, len(trace.steps)),
            adapter=self.name,
            model=self.model_name,
            details={"sample_answers": answers, "first_error": winner},
        )
