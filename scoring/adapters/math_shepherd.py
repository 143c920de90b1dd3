"""``math-shepherd``: peiyi9979/math-shepherd-mistral-7b-prm and PRMs trained in its format.

Follows the model card's usage snippet (the hub README of math-shepherd-mistral-7b-prm),
the only published procedure (ProcessBench published no script for this model), so the
one protocol is ``card``:

- ``candidate_tokens = tokenizer.encode(f"{good_token} {bad_token}")[1:]`` and
  ``step_tag_id = tokenizer.encode(f"{step_tag}")[-1]``: the same calls here;
- the card's solutions read ``"Step 1: ... ки\\nStep 2: ... ки"``, i.e. each step written
  ``f"Step {k}: {step} ки"`` (k from 1) on its own line, as in the Math-Shepherd training
  data; the steps go in as given, not stripped;
- ``input_for_prm = f"{question} {output}"``, ``tokenizer.encode(input_for_prm)`` (with
  the tokenizer's BOS), no chat template;
- ``logits[:, :, candidate_tokens].softmax(-1)[:, :, 0]`` read where ``input_id ==
  step_tag_id``: P(+) over ``+``/``-`` at every ``ки``.
"""

from __future__ import annotations

from typing import Any

import torch

from scoring.adapters.base import (
    CARD,
    Encoded,
    ModelAdapter,
    check_protocol,
    gather_rows,
    load_tokenizer,
    resolve_device_dtype,
)
from scoring.types import Trace

STEP_TAG = "ки"


class MathShepherd(ModelAdapter):
    name = "math-shepherd"

    def __init__(
        self, model: Any, tokenizer: Any, model_name: str = "", protocol: str = CARD
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.protocol = check_protocol(self.name, protocol, (CARD,))
        # The card: encode("+ -")[1:] -> [648, 387] (drops BOS); encode("ки")[-1] -> 12902
        candidates = tokenizer.encode("+ -")[1:]
        if len(candidates) != 2:
            raise ValueError(f"encode('+ -')[1:] should be 2 tokens, got {candidates}")
        self.good_id, self.bad_id = candidates
        self.tag_id = tokenizer.encode(STEP_TAG)[-1]

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = None,
        dtype: Any = None,
        protocol: str = CARD,
        backend: str = "local",
        url: str = "",
    ) -> Any:
        """The adapter on local weights, or (``backend="vllm"``) on a pooling server at
        ``url`` (``scoring.adapters.vllm_pooling``)."""
        if backend != "local":
            from scoring.adapters.vllm_pooling import load

            return load(cls, path, backend, url, protocol)
        from transformers import AutoModelForCausalLM

        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, load_tokenizer(path), model_name=path, protocol=protocol)

    @staticmethod
    def render(trace: Trace) -> str:
        """``"q Step 1: s1 ки\\nStep 2: s2 ки"``: the model card's input."""
        solution = "\n".join(
            f"Step {k}: {step} {STEP_TAG}" for k, step in enumerate(trace.steps, start=1)
        )
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
