"""``value-head``: a causal LM with a scalar head at each step token (Skywork-o1-Open-PRM).

Input as in Skywork's ``prepare_input``: ``tokenizer.encode(bos + problem + "\\n")``, then
each step encoded on its own with the step token (``"\\n"``) appended; no chat template.
Score of step i: sigmoid of the value head at step i's step token.

Empty steps: SkyworkAI's own ``prepare_input`` (skywork-o1-prm-inference,
``model_utils/io_utils.py``) does not skip them: an empty step is not encoded (so no BOS
from tokenizers that add one) but still gets its step token and a reward flag. We do the
same, so scores stay one per input step and an empty step scores the value at a bare step
token right after the previous one. (Some copies ``continue`` or ``break`` there instead,
which drops the step and shifts every later score onto the wrong step.)

The checkpoint holds the backbone under ``model.*`` and the head as ``v_head.summary.*``
(TRL's ``AutoModelForCausalLMWithValueHead`` naming); both load natively.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from scoring.adapters.base import (
    Encoded,
    ModelAdapter,
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
        self, model: Any, tokenizer: Any, model_name: str = "", step_token: str = "\n"
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        # Reference: step_token_id = tokenizer.encode(step_token)[-1]
        self.step_token_id = tokenizer.encode(step_token)[-1]

    @classmethod
    def from_pretrained(
        cls, path: str, device: str | None = None, dtype: Any = None, step_token: str = "\n"
    ) -> ValueHeadPRM:
        device, dtype = resolve_device_dtype(device, dtype)
        config = AutoConfig.from_pretrained(path)
        model = CausalLMWithValueHead.from_pretrained(path, config=config, dtype=dtype)
        return cls(model.to(device).eval(), load_tokenizer(path), path, step_token)

    def encode(self, trace: Trace) -> Encoded:
        tok = self.tokenizer
        ids = tok.encode((tok.bos_token or "") + trace.problem + "\n")
        positions = []
        for step in trace.steps:
            ids += (tok.encode(step) if step != "" else []) + [self.step_token_id]
            positions.append(len(ids) - 1)
        return self.check_positions(Encoded(tuple(ids), tuple(positions)), trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).float()  # (B, T)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], list[float]]:
        values = gather_rows(output, encoded.positions)
        return [float(torch.sigmoid(torch.tensor(v))) for v in values], values
