"""``math-shepherd``: peiyi9979/math-shepherd-mistral-7b-prm and PRMs trained in its format.

Input (as in the model card): ``f"{problem} {solution}"`` with every step followed by
``" ки"`` (steps joined by newlines), tokenized with the tokenizer's own BOS, no chat
template. Score of step i: softmax over the logits of ``+`` and ``-`` at the i-th ``ки``,
P(+). Token ids come from the tokenizer the way the reference derives them.
"""

from __future__ import annotations

from typing import Any

import torch

from scoring.adapters.base import (
    Encoded,
    ModelAdapter,
    gather_rows,
    load_tokenizer,
    resolve_device_dtype,
)
from scoring.types import Trace

STEP_TAG = "ки"


class MathShepherd(ModelAdapter):
    name = "math-shepherd"

    def __init__(self, model: Any, tokenizer: Any, model_name: str = "") -> None:
        super().__init__(model, tokenizer, model_name)
        # Reference: tokenizer.encode("+ -")[1:] -> [648, 387]; tokenizer.encode("ки")[-1] -> 12902
        candidates = tokenizer.encode("+ -", add_special_tokens=False)
        if len(candidates) != 2:
            raise ValueError(f"'+ -' should encode to 2 tokens, got {candidates}")
        self.good_id, self.bad_id = candidates
        self.tag_id = tokenizer.encode(STEP_TAG, add_special_tokens=False)[-1]

    @classmethod
    def from_pretrained(
        cls, path: str, device: str | None = None, dtype: Any = None
    ) -> MathShepherd:
        from transformers import AutoModelForCausalLM

        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, load_tokenizer(path), model_name=path)

    @staticmethod
    def render(trace: Trace) -> str:
        """``"q s1 ки\\ns2 ки"``: each step tagged, steps on their own lines."""
        solution = "\n".join(f"{step} {STEP_TAG}" for step in trace.steps)
        return f"{trace.problem} {solution}"

    def encode(self, trace: Trace) -> Encoded:
        ids = self.tokenizer.encode(self.render(trace))  # with BOS, as the reference
        positions = tuple(i for i, token in enumerate(ids) if token == self.tag_id)
        return self.check_positions(Encoded(tuple(ids), positions), trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
        pair = logits[..., [self.good_id, self.bad_id]].float()  # (B, T, 2)
        return pair.softmax(dim=-1)[..., 0]  # (B, T): P(+)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], None]:
        return gather_rows(output, encoded.positions), None
