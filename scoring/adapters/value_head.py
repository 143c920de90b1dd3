"""``value-head``: a causal LM with a scalar head at each step token (Skywork-o1-Open-PRM).

Follows SkyworkAI's ``prepare_input`` and ``derive_step_rewards`` (skywork-o1-prm-inference,
``model_utils/io_utils.py``) with ``return_probs=True`` (``model_utils/prm_model.py``), the
procedure the model card points to; ProcessBench published no script for it, so the one
protocol is ``card``. The reference takes a problem and a whole response:

- ``prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\\n")`` (a tokenizer
  without a ``bos_token`` fails there, and is refused here);
- ``step_token_id = tokenizer.encode(step_token)[-1]``;
- ``for step in response.split(step_token)``: ``tokenizer.encode(step)`` (so with a BOS
  per piece from tokenizers that add one), nothing for an empty piece, then
  ``step_token_id``, whose position carries a reward flag;
- the reward at a flag is ``sigmoid(v_head(last_hidden_state))``.

A trace's steps become that response joined by the step token (``"\\n"``), so a step with
``m`` lines is ``m`` of the reference's pieces, each encoded on its own with its own step
token; step i's score is the reward at the flag closing its last piece (its last line).
An empty step is one empty piece: a bare step token, as the reference gives it.

The checkpoint holds the backbone under ``model.*`` and the head as ``v_head.summary.*``
(TRL's ``AutoModelForCausalLMWithValueHead`` naming); both load natively.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

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


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden)


class CausalLMWithValueHead(PreTrainedModel):
    """Any ``AutoModel`` backbone (``model.*``) + ``v_head.summary`` Linear(h, 1)."""

    config_class = PretrainedConfig
    base_model_prefix = "model"

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.model = AutoModel.from_config(config)
        self.v_head = ValueHead(config.hidden_size)
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.v_head(hidden).squeeze(-1)  # (B, T)


class ValueHeadPRM(ModelAdapter):
    name = "value-head"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str = "",
        step_token: str = "\n",
        protocol: str = CARD,
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.protocol = check_protocol(self.name, protocol, (CARD,))
        if tokenizer.bos_token is None:
            # prepare_input concatenates tokenizer.bos_token: a TypeError in the reference
            raise ValueError(
                f"{self.name}: the tokenizer has no bos_token, which prepare_input needs"
            )
        self.step_token = step_token
        self.step_token_id = tokenizer.encode(step_token)[-1]

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = None,
        dtype: Any = None,
        step_token: str = "\n",
        protocol: str = CARD,
    ) -> ValueHeadPRM:
        device, dtype = resolve_device_dtype(device, dtype)
        config = AutoConfig.from_pretrained(path)
        model = CausalLMWithValueHead.from_pretrained(path, config=config, dtype=dtype)
        return cls(model.to(device).eval(), load_tokenizer(path), path, step_token, protocol)

    def encode(self, trace: Trace) -> Encoded:
        tok = self.tokenizer
        ids = tok.encode(tok.bos_token + trace.problem + "\n")
        positions = []
        for step in trace.steps:
            # the reference's pieces of this step: response.split(step_token) of the joined
            # steps is the concatenation of every step's own split
            for piece in step.split(self.step_token):
                ids += (tok.encode(piece) if piece != "" else []) + [self.step_token_id]
            positions.append(len(ids) - 1)  # the flag closing the step's last piece
        return self.check_positions(Encoded(tuple(ids), tuple(positions)), trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).float()  # (B, T)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], list[float]]:
        values = gather_rows(output, encoded.positions)
        return [float(torch.sigmoid(torch.tensor(v))) for v in values], values
