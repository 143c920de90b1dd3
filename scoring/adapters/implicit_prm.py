"""``implicit-prm``: PRIME / EurusPRM implicit process rewards from two causal LMs.

Input: the chat template with the problem as user turn and the steps joined by ``\\n\\n``
as assistant turn. Per response token t: ``beta * (log pi(x_t | x_<t) - log pi_ref(x_t | x_<t))``.
q_i = the sum of those up to the last token of step i; the step reward is
r_i = q_i - q_{i-1}. ``scores`` are sigmoid(q_i) (for thresholds), ``raw`` the q_i.

Each step's last token is found from character offsets, so the score at step i depends
only on tokens up to the end of step i's text (which a prefix-by-prefix run also sees).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scoring.adapters.base import Encoded, ModelAdapter, load_tokenizer, resolve_device_dtype
from scoring.types import Trace

DEFAULT_BETA = 0.001  # the EurusPRM default; their ProcessBench run used 0.005


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

    def encode(self, trace: Trace) -> Encoded:
        messages = [
            {"role": "user", "content": trace.problem},
            {"role": "assistant", "content": "\n\n".join(trace.steps)},
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        head = self.tokenizer.apply_chat_template(
            messages[:1], tokenize=False, add_generation_prompt=True
        )
        if not text.startswith(head):
            raise ValueError("chat template does not render the user turn as a prefix")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]

        def token_at(char: int) -> int:
            return next(i for i, (start, end) in enumerate(offsets) if start <= char < end)

        positions = []
        cursor = len(head)
        for step in trace.steps:
            end = text.index(step, cursor) + len(step)  # one past the step's last character
            positions.append(token_at(end - 1))
            cursor = end
        encoded = Encoded(tuple(ids), tuple(positions), response_start=token_at(len(head)))
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
        cumulative = output[encoded.response_start :].cumsum(0)  # (T - start,)
        q = [float(cumulative[p - encoded.response_start]) for p in encoded.positions]
        return [1 / (1 + math.exp(-v)) for v in q], q
