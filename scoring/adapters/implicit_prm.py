"""``implicit-prm``: PRIME / EurusPRM implicit process rewards from two causal LMs.

Input: the chat template with the problem as user turn and the steps joined by ``\\n\\n``
as assistant turn, tokenized once. Per token t: ``beta * (log pi(x_t | x_<t) - log
pi_ref(x_t | x_<t))``; q_i is the running sum of those at step i's read-out token, the step
reward is r_i = q_i - q_{i-1}. ``scores`` are sigmoid(q_i) (for thresholds), ``raw`` the q_i.

Read-out convention: EurusPRM's reference script, reproduced exactly (an implicit PRM is
used the way its authors run it). prm-formats.md says "q_t = cumulative sum at the end of
step t"; the reference differs, and we follow the reference:

- It renders the chat cut after k steps, ``.strip()``s it, appends ``"\\n\\n"`` when
  0 < k < n, encodes it and takes ``len(ids) - 2`` (``step_last_tokens[k]``). The running
  sum starts at ``step_last_tokens[0]``: the token right after the assistant header (with
  the Qwen template, the ``"\\n"`` after ``<|im_start|>assistant``), so it is summed too.
- q_k is the sum through token ``step_last_tokens[k] + 1``: for a step other than the
  last, the ``"\\n\\n"`` separator and the first token of the next step; for the last
  step, its end-of-turn token (``<|im_end|>``).

So q_k depends on the text through the first token of step k + 1: scoring ``steps[:m]``
alone gives the same q for steps before m, but its last q includes ``<|im_end|>`` where
the full trace's includes the next step's first token. Read-out positions come from token
counts of prefixes, as in the reference, so no character-to-token mapping is involved and
chat templates that trim message content (Llama 3) need no special care.

Where the reference is undefined, we define:

- A step with no text of its own (empty, or whitespace only, which a trimming template
  drops) adds nothing: r_i = 0, so q_i = q_{i-1}, and q_i = 0 before any such step
  (sigmoid 0.5). The reference would read a neighbour's tokens there.
- Read-out positions are clamped into the response, so no index ever falls before its
  start (which would wrap around to a whole-response sum) or past the last token.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scoring.adapters.base import Encoded, ModelAdapter, load_tokenizer, resolve_device_dtype
from scoring.types import Trace

DEFAULT_BETA = 0.001  # the EurusPRM default; their ProcessBench run used 0.005
STEP_SEPARATOR = "\n\n"


class ImplicitPRM(ModelAdapter):
    name = "implicit-prm"

    def __init__(
        self,
        model: Any,
        ref_model: Any,
        tokenizer: Any,
        model_name: str = "",
        beta: float = DEFAULT_BETA,
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.ref_model = ref_model
        self.beta = beta

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        ref_model: str | None = None,
        device: str | None = None,
        dtype: Any = None,
        beta: float = DEFAULT_BETA,
    ) -> ImplicitPRM:
        """``path``: the PRM (pi); ``ref_model``: the reference policy (pi_ref), required."""
        from transformers import AutoModelForCausalLM

        if not ref_model:
            raise ValueError("implicit-prm needs ref_model (the reference policy)")
        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        ref = AutoModelForCausalLM.from_pretrained(ref_model, dtype=dtype).to(device).eval()
        return cls(model, ref, load_tokenizer(path), path, beta)

    def render(self, problem: str, steps: tuple[str, ...]) -> str:
        messages = [
            {"role": "user", "content": problem},
            {"role": "assistant", "content": STEP_SEPARATOR.join(steps)},
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def step_last_token(self, trace: Trace, k: int) -> int:
        """The reference's ``step_last_tokens[k]``: ``len(ids) - 2`` of the chat cut after
        ``k`` steps, stripped, with ``"\\n\\n"`` appended between steps.

        With the Qwen template and k = 1 of 2 steps the cut chat ends ``step1<|im_end|>\\n\\n``,
        so the index is that of ``<|im_end|>``: in the full trace, the separator's.
        """
        text = self.render(trace.problem, trace.steps[:k]).strip()
        if 0 < k < len(trace.steps):
            text += STEP_SEPARATOR
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) - 2

    def encode(self, trace: Trace) -> Encoded:
        ids = self.tokenizer(self.render(trace.problem, trace.steps), add_special_tokens=False)[
            "input_ids"
        ]
        last = len(ids) - 1
        start = min(max(self.step_last_token(trace, 0), 0), last)
        positions = []
        position = start - 1  # "nothing summed yet": read() gives q = 0 there
        for k, step in enumerate(trace.steps, start=1):
            if step.strip():  # else: no text of its own, r = 0, keep the previous read-out
                position = min(max(self.step_last_token(trace, k) + 1, start), last)
            positions.append(position)
        encoded = Encoded(tuple(ids), tuple(positions), response_start=start)
        return self.check_positions(encoded, trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        def token_logps(model: Any) -> torch.Tensor:
            logits = model(
                input_ids=input_ids, attention_mask=attention_mask
            ).logits.float()  # (B, T, V)
            logps = (
                logits[:, :-1].log_softmax(-1).gather(2, input_ids[:, 1:, None]).squeeze(2)
            )  # (B, T-1)
            return torch.nn.functional.pad(logps, (1, 0))  # (B, T): entry t scores token t

        return self.beta * (token_logps(self.model) - token_logps(self.ref_model))  # (B, T)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], list[float]]:
        start = encoded.response_start
        # entry j: sum of tokens start .. start + j - 1; entry 0 is the empty sum
        cumulative = torch.cat([output.new_zeros(1), output[start:].cumsum(0)])  # (1 + T - start,)
        q = []
        for p in encoded.positions:
            if not 0 <= p - start + 1 < len(cumulative):
                raise ValueError(f"read-out {p} outside the response starting at {start}")
            q.append(float(cumulative[p - start + 1]))
        return [1 / (1 + math.exp(-v)) for v in q], q
