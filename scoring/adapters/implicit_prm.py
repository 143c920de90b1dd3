"""``implicit-prm``: PRIME / EurusPRM implicit process rewards from two causal LMs.

Per token t: ``beta * (log pi(x_t | x_<t) - log pi_ref(x_t | x_<t))``; q_i is the running
sum of those through step i's read-out token, the step reward is r_i = q_i - q_{i-1}.
``scores`` are sigmoid(q_i) (what ProcessBench thresholds), ``raw`` the q_i. The input is
the chat template with the problem as user turn and the steps joined by ``"\\n\\n"`` as
assistant turn, tokenized once. Read-out positions come from token counts of prefixes, as
in the references, so no character-to-token mapping is involved.

``protocol=card`` (default): EurusPRM's model card snippet, which is
``implicit_prm_data_collator`` and ``get_reward`` in ImplicitPRM's ``eval/prm_eval_utils.py``
(that one also has two Llama-3 lines the card lacks; we follow them, they change nothing
for other templates):

- ``step_last_tokens[k]`` = ``len(ids) - 2`` of the chat cut after k steps, ``.strip()``ped,
  with a trailing ``<|start_header_id|>assistant<|end_header_id|>`` and then ``<|eot_id|>``
  cut off when k < n, and ``"\\n\\n"`` appended when 0 < k < n;
- ``label_mask`` is 1 from token ``step_last_tokens[0]`` on: with the Qwen template, the
  ``"\\n"`` after ``<|im_start|>assistant`` is the first token summed;
- ``beta_reward.cumsum(-1).gather(index=step_last_tokens[1:])`` over the shifted log-ratios:
  q_k sums through token ``step_last_tokens[k] + 1``; with the Qwen template that is, for a
  step other than the last, the ``"\\n\\n"`` separator and the next step's first token,
  and ``<|im_end|>`` for the last (with Llama 3's, the separator, and ``<|eot_id|>``).

``protocol=processbench``: ImplicitPRM's ``eval/processbench.py`` (``inference`` and
``build_item_tensors``), the script behind EurusPRM's ProcessBench numbers:

- each step becomes ``f"Step {i+1}: " + step``;
- ``step_last_tokens`` as the card without the Llama-3 lines;
- ``mask[first_boundary:] = 1`` on the shifted log-ratios: the sum starts one token later,
  at token ``step_last_tokens[0] + 1``; read-outs are clamped to ``seq_len - 2`` as there.

So q_k can depend on the text of step k + 1: scoring ``steps[:m]`` alone gives the same q
for steps before m, but not necessarily for step m.

Empty and whitespace-only steps go through the same lines (the references read whatever
token their cut chat's length points at). Where the references are undefined, we define:
a read-out past the last token is clamped to it (the card's ``gather`` would fail), and
one before the first summed token is q = 0 (the masked sum there).

``beta`` defaults to 0.001, both scripts' default (EurusPRM's ProcessBench run script
passes ``--coef 0.005``: ``--option beta=0.005``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scoring.adapters.base import (
    CARD,
    PROCESSBENCH,
    Encoded,
    ModelAdapter,
    check_protocol,
    load_tokenizer,
    resolve_device_dtype,
)
from scoring.types import Trace

DEFAULT_BETA = 0.001
STEP_SEPARATOR = "\n\n"
# prm_eval_utils.py cuts these off a cut chat before counting its tokens (Llama 3 only)
LLAMA3_ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>"
LLAMA3_END_OF_TURN = "<|eot_id|>"


class ImplicitPRM(ModelAdapter):
    name = "implicit-prm"

    def __init__(
        self,
        model: Any,
        ref_model: Any,
        tokenizer: Any,
        model_name: str = "",
        beta: float = DEFAULT_BETA,
        protocol: str = CARD,
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.protocol = check_protocol(self.name, protocol, (CARD, PROCESSBENCH))
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
        protocol: str = CARD,
    ) -> ImplicitPRM:
        """``path``: the PRM (pi); ``ref_model``: the reference policy (pi_ref), required."""
        from transformers import AutoModelForCausalLM

        if not ref_model:
            raise ValueError("implicit-prm needs ref_model (the reference policy)")
        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        ref = AutoModelForCausalLM.from_pretrained(ref_model, dtype=dtype).to(device).eval()
        return cls(model, ref, load_tokenizer(path), path, beta, protocol)

    def render(self, problem: str, steps: tuple[str, ...]) -> str:
        messages = [
            {"role": "user", "content": problem},
            {"role": "assistant", "content": STEP_SEPARATOR.join(steps)},
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def steps(self, trace: Trace) -> tuple[str, ...]:
        """The assistant's steps as the protocol writes them."""
        if self.protocol == PROCESSBENCH:
            return tuple(f"Step {i + 1}: {step}" for i, step in enumerate(trace.steps))
        return trace.steps

    def step_last_token(self, problem: str, steps: tuple[str, ...], k: int) -> int:
        """The reference's ``step_last_tokens[k]``: ``len(ids) - 2`` of the chat cut after
        ``k`` steps, stripped, with ``"\\n\\n"`` appended between steps.

        With the Qwen template and k = 1 of 2 steps the cut chat ends ``step1<|im_end|>\\n\\n``,
        so the index is that of ``<|im_end|>``: in the full trace, the separator's.
        """
        text = self.render(problem, steps[:k]).strip()
        if self.protocol == CARD and k != len(steps):
            text = text.removesuffix(LLAMA3_ASSISTANT_HEADER).removesuffix(LLAMA3_END_OF_TURN)
        if 0 < k < len(steps):
            text += STEP_SEPARATOR
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) - 2

    def encode(self, trace: Trace) -> Encoded:
        steps = self.steps(trace)
        ids = self.tokenizer(self.render(trace.problem, steps), add_special_tokens=False)[
            "input_ids"
        ]
        last = len(ids) - 1
        # card: label_mask from token step_last_tokens[0]; processbench: mask[first_boundary:]
        # on the shifted log-ratios, which is one token later
        first = self.step_last_token(trace.problem, steps, 0)
        if self.protocol == PROCESSBENCH:
            first += 1
        start = min(max(first, 0), last)
        # a read-out before ``start`` is q = 0, as the masked sum there
        positions = [
            min(max(self.step_last_token(trace.problem, steps, k) + 1, start - 1), last)
            for k in range(1, len(steps) + 1)
        ]
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
