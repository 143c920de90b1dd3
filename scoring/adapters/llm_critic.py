"""``llm-critic``: a chat LLM asked for the earliest wrong paragraph (ProcessBench protocol).

The solution is shown as ``<paragraph_i>`` blocks with ProcessBench's critique template;
the answer is the integer in the last ``\\boxed{}`` (-1: no error). Greedy decoding, or n
samples and a majority vote over the parsed indices (unparseable samples do not vote).

Step scores encode the voted index: 1.0 before it, 0.0 from it on, all 1.0 for -1, and NaN
when no sample gave a usable answer (ProcessBench counts that as wrong in either split).
``details`` keeps every sample's parsed index.

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


def vote(indices: Sequence[int | None], n_steps: int) -> int | None:
    """Majority index among parseable answers in range (first seen wins ties)."""
    valid = [i for i in indices if i is not None and -1 <= i < n_steps]
    if not valid:
        return None
    return Counter(valid).most_common(1)[0][0]


def scores_for(index: int | None, n_steps: int) -> tuple[float, ...]:
    if index is None:
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

    def generate(self, prompt: str, n: int, temperature: float, max_tokens: int) -> list[str]:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "n": n,
            "temperature": temperature,
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

    def generate(self, prompt: str, n: int, temperature: float, max_tokens: int) -> list[str]:
        import torch

        ids = torch.tensor([self.chat_ids(prompt)], device=self.model.device)  # (1, T)
        sample = temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=None,
                top_k=None,
                num_return_sequences=n,
                max_new_tokens=max_tokens,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )  # (n, T + new)
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


class LLMCritic:
    name = "llm-critic"

    def __init__(
        self,
        backend: Any,
        model_name: str = "",
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 4096,
    ) -> None:
        if n > 1 and temperature == 0.0:
            temperature = 0.7  # n greedy samples would all be the same
        self.backend = backend
        self.model_name = model_name
        self.n = n
        self.temperature = temperature
        self.max_tokens = max_tokens

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        base_url: str | None = None,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 4096,
        device: str | None = None,
        dtype: Any = None,
    ) -> LLMCritic:
        """``path`` is the served model name with ``base_url``, else a local/hub model."""
        backend = (
            OpenAIBackend(base_url, path) if base_url else TransformersBackend(path, device, dtype)
        )
        return cls(backend, path, n, temperature, max_tokens)

    def score_trace(self, trace: Trace) -> StepScores:
        completions = self.backend.generate(
            critique_prompt(trace), self.n, self.temperature, self.max_tokens
        )
        indices = [parse_index(c) for c in completions]
        index = vote(indices, len(trace.steps))
        return StepScores(
            trace_id=trace.id,
            scores=scores_for(index, len(trace.steps)),
            adapter=self.name,
            model=self.model_name,
            details={"sample_indices": indices, "first_error": index},
        )
