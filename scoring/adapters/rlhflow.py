"""``rlhflow``: RLHFlow/Llama3.1-8B-PRM-Mistral-Data and -Deepseek-Data.

Input (as in RLHFlow's reference): a Llama-3.1 chat where user turn 1 is
``problem + " " + step_1``, user turn k is ``step_k``, and every user turn is followed by
an assistant turn ``"+"``. The reference scores step k by building the conversation up to
step k and reading logits at position -3 (the token that predicts the final ``+``); here
the whole conversation runs once and every assistant ``+`` is read at the position just
before it. Score: softmax over the ``+``/``-`` logits, P(+).
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


class RLHFlow(ModelAdapter):
    name = "rlhflow"

    def __init__(self, model: Any, tokenizer: Any, model_name: str = "") -> None:
        super().__init__(model, tokenizer, model_name)
        # Reference: tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
        self.good_id = tokenizer.encode("+")[-1]
        self.bad_id = tokenizer.encode("-")[-1]

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, dtype: Any = None) -> RLHFlow:
        from transformers import AutoModelForCausalLM

        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, load_tokenizer(path), model_name=path)

    @staticmethod
    def conversation(trace: Trace) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = []
        for k, step in enumerate(trace.steps):
            user = f"{trace.problem} {step}" if k == 0 else step
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": "+"}]
        return messages

    def encode(self, trace: Trace) -> Encoded:
        messages = self.conversation(trace)
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        positions = []
        for k in range(len(trace.steps)):
            # Where assistant turn k's "+" starts: the length of the chat up to user turn k
            # with the generation prompt, which must be a prefix of the full chat.
            head = self.tokenizer.apply_chat_template(
                messages[: 2 * k + 1], tokenize=False, add_generation_prompt=True
            )
            if not text.startswith(head) or text[len(head)] != "+":
                raise ValueError("chat template does not render turns as prefixes")
            plus = next(i for i, (start, _) in enumerate(offsets) if start == len(head))
            if ids[plus] != self.good_id:
                raise ValueError(f"assistant '+' tokenized as {ids[plus]}, not {self.good_id}")
            positions.append(plus - 1)  # the position whose logits predict that "+"
        return self.check_positions(Encoded(tuple(ids), tuple(positions)), trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
        pair = logits[..., [self.good_id, self.bad_id]].float()  # (B, T, 2)
        return pair.softmax(dim=-1)[..., 0]  # (B, T): P(+)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], None]:
        return gather_rows(output, encoded.positions), None
