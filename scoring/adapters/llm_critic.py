"""``llm-critic``: a chat LLM asked for the earliest wrong paragraph, as ProcessBench does.

Follows ProcessBench's ``code/run_eval.py`` and ``code/templates/critique_template.txt``;
the one protocol is ``processbench`` (the prompt is ProcessBench's, and no critic model's
card publishes another procedure):

- ``prepare_input_boxed``: ``<paragraph_i>\\n{step}\\n</paragraph_i>`` blocks joined by
  ``"\\n\\n"``, put into the stripped critique template, as one user turn;
- ``apply_chat_template``: the chat rendered with the generation prompt as text, then
  tokenized without special tokens;
- ``SamplingParams`` (see :func:`processbench_sampling`): greedy with seed 42, or for
  voting n samples at temperature 1, top_p 0.9 (Qwen2.5-Math models: 0.7, 0.8, top_k 20),
  seed 42; up to 32768 new tokens for QwQ models, 8192 for the others; vLLM's defaults for
  the rest (repetition penalty 1.0, no top_k);
- ``extract_answer``: the last match of ``\\\\boxed\\{([^}]*)\\}``, stripped (so no nested
  braces, no ``\\fbox``, no space before the brace);
- greedy: ``int(pred)``, None if that fails; voting: the answers that are not None are
  counted as strings, ``Counter(preds).most_common(1)[0][0]`` wins (first seen on ties),
  then ``int()`` of the winner, None if that fails.

Step scores encode the predicted index: 1.0 before it, 0.0 from it on, all 1.0 for -1, and
NaN when there is no index in [-1, n_steps) (ProcessBench's ``pred == label`` is then
false in either split). ``details`` keeps every sample's extracted string, the winning
string and the index.

Every sampling parameter is sent explicitly on both backends, since each would otherwise
fill gaps from the model's ``generation_config.json`` (Qwen2.5-Instruct's sets a
repetition penalty of 1.05, top_k 20), which ProcessBench's vLLM run did not use.
Backends: ``transformers`` generation (this module imports torch lazily; the seed is
ProcessBench's, the random stream cannot be vLLM's) and any OpenAI-compatible server (vLLM,
SGLang) through ``/chat/completions`` with the standard library's ``urllib``, passing
``top_k``, ``repetition_penalty``, ``min_p`` and ``seed`` beside the OpenAI parameters.
Not a causal per-step scorer: each trace is one generation request.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from scoring.adapters.base import PROCESSBENCH, check_protocol
from scoring.types import StepScores, Trace

CRITIQUE_TEMPLATE = """The following is a math problem and a solution (split into paragraphs, enclosed with tags and indexed from 0):

[Math Problem]

{problem}

[Solution]

{tagged_response}

Your task is to review and critique the solution paragraph by paragraph. Once you identify an error in a paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return the index of -1 (which typically denotes "not found").

Please put your final answer (i.e., the index) in \\boxed{{}}."""

BOXED = re.compile(r"\\boxed\{([^}]*)\}")  # run_eval.py's extract_answer pattern
ALL_TOKENS = -1  # top_k that keeps every token (vLLM's convention)


@dataclass(frozen=True)
class Sampling:
    """Every parameter one generation request sets."""

    n: int
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int
    repetition_penalty: float = 1.0
    min_p: float = 0.0


def processbench_sampling(model_name: str, n: int = 1) -> Sampling:
    """run_eval.py's ``SamplingParams`` for ``--model_path model_name``, greedy for n = 1,
    ``--use_voting --voting_n n`` otherwise.

    >>> processbench_sampling("Qwen/QwQ-32B-Preview").max_tokens
    32768
    >>> s = processbench_sampling("Qwen/Qwen2.5-Math-72B-Instruct", n=8)
    >>> (s.temperature, s.top_p, s.top_k, s.seed)
    (0.7, 0.8, 20, 42)
    """
    max_tokens = 32768 if "QwQ" in model_name else 8192
    if n == 1:
        return Sampling(1, 0.0, 1.0, ALL_TOKENS, max_tokens, 42)
    if "Qwen2.5-Math" in model_name:
        return Sampling(n, 0.7, 0.8, 20, max_tokens, 42)
    return Sampling(n, 1.0, 0.9, ALL_TOKENS, max_tokens, 42)


def critique_prompt(trace: Trace) -> str:
    tagged = "".join(
        f"<paragraph_{i}>\n{step}\n</paragraph_{i}>\n\n" for i, step in enumerate(trace.steps)
    ).strip()
    return CRITIQUE_TEMPLATE.format(problem=trace.problem, tagged_response=tagged)


def extract_answer(completion: str) -> str | None:
    """run_eval.py's ``extract_answer``: the stripped text of the last ``\\boxed{...}``
    without a brace inside, or None.

    >>> extract_answer("\\\\boxed{1} or rather \\\\boxed{ 2 }"), extract_answer("\\\\fbox{2}")
    ('2', None)
    """
    matches = BOXED.findall(completion)
    return matches[-1].strip() if matches else None


def as_index(answer: str | None) -> int | None:
    """``int(pred)``, None where that fails, as run_eval.py.

    >>> as_index("+2"), as_index("01"), as_index("\\\\text{2"), as_index(None)
    (2, 1, None, None)
    """
    if answer is None:
        return None
    try:
        return int(answer)
    except ValueError:
        return None


def vote(answers: Sequence[str | None]) -> str | None:
    """The most common extracted string among samples that gave one (first seen on ties),
    as run_eval.py's ``Counter(preds).most_common(1)``: ``"01"`` and ``"1"`` are different
    votes.

    >>> vote(["01", "1", "3", "3", None])
    '3'
    """
    given = [a for a in answers if a is not None]
    if not given:
        return None
    return Counter(given).most_common(1)[0][0]


def scores_for(index: int | None, n_steps: int) -> tuple[float, ...]:
    """Step scores for a predicted index; NaN unless it is an index in [-1, n_steps)."""
    if index is None or not -1 <= index < n_steps:
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

    def generate(self, prompt: str, sampling: Sampling) -> list[str]:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repetition_penalty": sampling.repetition_penalty,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
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
        """run_eval.py's ``apply_chat_template``: render as text, tokenize without adding
        special tokens."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, prompt: str, sampling: Sampling) -> list[str]:
        import torch

        ids = torch.tensor([self.chat_ids(prompt)], device=self.model.device)  # (1, T)
        sample = sampling.temperature > 0
        torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            # Every knob set, so nothing comes from the checkpoint's generation_config.json.
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=sampling.top_k if sample and sampling.top_k > 0 else None,
                min_p=sampling.min_p or None,
                typical_p=None,
                repetition_penalty=sampling.repetition_penalty,
                no_repeat_ngram_size=None,
                num_return_sequences=sampling.n,
                max_new_tokens=sampling.max_tokens,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )  # (n, T + new)
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


class LLMCritic:
    """Sampling defaults to :func:`processbench_sampling` for the model's name; any of
    ``temperature``, ``top_p``, ``top_k``, ``max_tokens``, ``seed`` overrides its value."""

    name = "llm-critic"

    def __init__(
        self,
        backend: Any,
        model_name: str = "",
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        protocol: str = PROCESSBENCH,
    ) -> None:
        self.protocol = check_protocol(self.name, protocol, (PROCESSBENCH,))
        sampling = processbench_sampling(model_name, n)
        overrides = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "top_p": top_p,
            "top_k": top_k,
            "seed": seed,
        }
        sampling = replace(sampling, **{k: v for k, v in overrides.items() if v is not None})
        if n > 1 and sampling.temperature == 0.0:
            raise ValueError(f"n={n} greedy samples would all be the same: set temperature > 0")
        self.backend = backend
        self.model_name = model_name
        self.sampling = sampling

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        base_url: str | None = None,
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        protocol: str = PROCESSBENCH,
        device: str | None = None,
        dtype: Any = None,
    ) -> LLMCritic:
        """``path`` is the served model name with ``base_url``, else a local/hub model."""
        backend = (
            OpenAIBackend(base_url, path) if base_url else TransformersBackend(path, device, dtype)
        )
        return cls(backend, path, n, temperature, max_tokens, top_p, top_k, seed, protocol)

    def score_trace(self, trace: Trace) -> StepScores:
        if not trace.steps:  # nothing to critique
            return StepScores(
                trace_id=trace.id, scores=(), adapter=self.name, model=self.model_name
            )
        completions = self.backend.generate(critique_prompt(trace), self.sampling)
        answers = [extract_answer(c) for c in completions]
        winner = vote(answers)
        index = as_index(winner)
        return StepScores(
            trace_id=trace.id,
            scores=scores_for(index, len(trace.steps)),
            adapter=self.name,
            model=self.model_name,
            details={"sample_answers": answers, "vote": winner, "first_error": index},
        )
