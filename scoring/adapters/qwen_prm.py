"""``qwen-prm``: Qwen2.5-Math-PRM-7B/72B and Qwen2.5-Math-7B-PRM800K.

Follows the model card's usage snippet (Qwen/Qwen2.5-Math-PRM-7B); ProcessBench published
no script for these models, so the one protocol is ``card``:

- messages: the system prompt below, the problem as user turn, the assistant turn
  ``"<extra_0>".join(steps) + "<extra_0>"`` (steps as given, not stripped);
- ``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)``,
  then ``tokenizer.encode`` of that text;
- ``step_sep_id = tokenizer.encode("<extra_0>")[0]``, and ``make_step_rewards``: softmax of
  the 2 logits at every ``<extra_0>``, index 1.

Loaded natively by default: a ``Qwen2Model`` plus the 2-layer head (weights ``model.*``,
``score.0.*``, ``score.2.*``), so a transformers release that breaks the checkpoint's
remote code does not break us. ``trust_remote_code=True`` loads the checkpoint's own class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel

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

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_SEPARATOR = "<extra_0>"


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    """Native re-implementation of the checkpoint's class: Qwen2 backbone + MLP head.

    Not weight-compatible with ``Qwen2ForTokenClassification`` (whose head is one Linear).
    """

    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(),
            nn.Linear(config.hidden_size, self.num_labels),
        )
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (self.score(hidden),)  # (B, T, 2)


class QwenPRM(ModelAdapter):
    name = "qwen-prm"
    system_prompt = SYSTEM_PROMPT

    def __init__(
        self, model: Any, tokenizer: Any, model_name: str = "", protocol: str = CARD
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.protocol = check_protocol(self.name, protocol, (CARD,))
        # The reference reads tokenizer.encode("<extra_0>")[0]; <extra_0> is a special token.
        self.separator_id = tokenizer.convert_tokens_to_ids(STEP_SEPARATOR)
        if self.separator_id is None or self.separator_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {STEP_SEPARATOR} token")

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = None,
        dtype: Any = None,
        trust_remote_code: bool = False,
        protocol: str = CARD,
        backend: str = "local",
        url: str = "",
    ) -> Any:
        """The adapter on local weights, or (``backend="vllm"``) on a pooling server at
        ``url`` (``scoring.adapters.vllm_pooling``)."""
        if backend != "local":
            from scoring.adapters.vllm_pooling import load

            return load(cls, path, backend, url, protocol)
        device, dtype = resolve_device_dtype(device, dtype)
        if trust_remote_code:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=True)
        else:
            model = Qwen2ForProcessRewardModel.from_pretrained(path, dtype=dtype)
        model.to(device).eval()
        return cls(model, load_tokenizer(path), model_name=path, protocol=protocol)

    def render(self, trace: Trace) -> str:
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": trace.problem},
            {"role": "assistant", "content": STEP_SEPARATOR.join(trace.steps) + STEP_SEPARATOR},
        ]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False
        )

    def encode(self, trace: Trace) -> Encoded:
        ids = self.tokenizer(self.render(trace))["input_ids"]  # == tokenizer.encode(text)
        positions = tuple(i for i, token in enumerate(ids) if token == self.separator_id)
        return self.check_positions(Encoded(tuple(ids), positions), trace)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, T, 2)
        return logits.float().softmax(dim=-1)[..., 1]  # (B, T): P(correct)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], None]:
        return gather_rows(output, encoded.positions), None
