"""``token-classification``: TRL-style PRMs (``AutoModelForTokenClassification``, 2 labels).

Follows TRL's ``PRMTrainer.tokenize_row`` (``trl/experimental/prm/prm_trainer.py``), how
these models are trained; the one protocol is ``card``:

- ``prompt_ids = tokenizer(prompt, add_special_tokens=False)``, each completion (step)
  tokenized the same way **separately**, not stripped;
- ``separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)`` appended
  to every step;
- ``[tokenizer.bos_token_id] + prompt_ids`` when the tokenizer has a BOS;
- the label of a step sits on its last token (``[-100] * (len(completion) - 1) +
  [label]``), so its score is the softmax there, index 1 (``LABEL_1`` = correct).

Tokenizing the joined string instead shifts F1 by about 4 points on ProcessBench.
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


class TokenClassificationPRM(ModelAdapter):
    name = "token-classification"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str = "",
        step_separator: str = "\n",
        protocol: str = CARD,
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.protocol = check_protocol(self.name, protocol, (CARD,))
        self.separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = None,
        dtype: Any = None,
        step_separator: str = "\n",
        protocol: str = CARD,
    ) -> TokenClassificationPRM:
        from transformers import AutoModelForTokenClassification

        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForTokenClassification.from_pretrained(path, dtype=dtype)
        return cls(model.to(device).eval(), load_tokenizer(path), path, step_separator, protocol)

    def encode(self, trace: Trace) -> Encoded:
        tok = self.tokenizer
        ids = tok(trace.problem, add_special_tokens=False)["input_ids"]
        if tok.bos_token_id is not None:
            ids = [tok.bos_token_id, *ids]
        positions = []
        for step in trace.steps:
            ids += tok(step, add_special_tokens=False)["input_ids"] + self.separator_ids
            positions.append(len(ids) - 1)
        return self.check_positions(Encoded(tuple(ids), tuple(positions)), trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, 2)
        return logits.float().softmax(dim=-1)[..., 1]  # (B, T): P(LABEL_1 = correct)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], None]:
        return gather_rows(output, encoded.positions), None
