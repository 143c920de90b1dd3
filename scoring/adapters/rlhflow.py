"""``rlhflow``: RLHFlow/Llama3.1-8B-PRM-Mistral-Data and -Deepseek-Data.

Two published procedures, both a Llama-3.1 chat where user turn k holds step k and every
user turn is answered by an assistant turn ``"+"``:

``protocol=card`` (default): RLHFlow's ``math-rm/prm_evaluate.py`` (RLHF-Reward-Modeling),
how the model card and README score steps:

- ``ans_list = [j.strip() for j in ans_list]``: every step stripped;
- ``text = prompt + " " + ans_list[0]`` for the first user turn, ``ans_list[k]`` after;
- ``tokenizer.apply_chat_template(conversation)`` on the conversation up to step k, and
  ``logits[:, -3, candidate_tokens].softmax(-1)[:, 0]`` with ``candidate_tokens`` =
  ``[tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]]``: P(+) over ``+``/``-`` at the
  token that predicts step k's assistant ``+``.

``protocol=processbench``: ProcessBench's ``code/run_eval_prm_rlhflow.py``:

- ``d['problem'] + '\\n\\n' + step`` for the first user turn, ``step`` after, not stripped;
- one chat completion per step on the conversation so far (a generation prompt after
  user turn k), ``temperature=0., max_tokens=1``: the greedy next token;
- ``content.strip().lower().startswith('+')``: the judgment; the first step judged
  otherwise is the prediction, and the conversation continues with ``"+"`` turns.

Both run here as one pass over the whole conversation: the reference's prefix up to step
k (with its generation prompt) is a prefix of the full chat, so the token before
assistant turn k's ``"+"`` is the reference's position -3 (card) and its generation
position (processbench). Under ``processbench`` a step scores 1.0 when its greedy token
reads as ``+`` and 0.0 otherwise, so the first step below any threshold in (0, 1] is the
reference's prediction; the script stops at that step, later steps here are judged with
``"+"`` turns before them, as the script would have continued.
"""

from __future__ import annotations

from typing import Any

import torch

from scoring.adapters.base import (
    CARD,
    PROCESSBENCH,
    Encoded,
    ModelAdapter,
    check_protocol,
    gather_rows,
    load_tokenizer,
    resolve_device_dtype,
)
from scoring.types import Trace


class RLHFlow(ModelAdapter):
    name = "rlhflow"

    def __init__(
        self, model: Any, tokenizer: Any, model_name: str = "", protocol: str = CARD
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        self.protocol = check_protocol(self.name, protocol, (CARD, PROCESSBENCH))
        # prm_evaluate.py: tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
        self.good_id = tokenizer.encode("+")[-1]
        self.bad_id = tokenizer.encode("-")[-1]
        self._judgments: dict[int, bool] = {}

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

    def conversation(self, trace: Trace) -> list[dict[str, str]]:
        """The chat with an assistant ``"+"`` after every step, as the protocol builds it."""
        if self.protocol == CARD:
            steps = [step.strip() for step in trace.steps]
            joiner = " "
        else:
            steps = list(trace.steps)
            joiner = "\n\n"
        messages: list[dict[str, str]] = []
        for k, step in enumerate(steps):
            user = trace.problem + joiner + step if k == 0 else step
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
        if self.protocol == PROCESSBENCH:
            return logits.argmax(dim=-1)  # (B, T): the greedy next token
        pair = logits[..., [self.good_id, self.bad_id]].float()  # (B, T, 2)
        return pair.softmax(dim=-1)[..., 0]  # (B, T): P(+)

    def judgment(self, token_id: int) -> bool:
        """run_eval_prm_rlhflow.py's ``content.strip().lower().startswith('+')`` on one
        greedy token, decoded as a server returns it (special tokens skipped)."""
        if token_id not in self._judgments:
            content = self.tokenizer.decode([token_id], skip_special_tokens=True)
            self._judgments[token_id] = content.strip().lower().startswith("+")
        return self._judgments[token_id]

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], None]:
        values = gather_rows(output, encoded.positions)
        if self.protocol == PROCESSBENCH:
            return [1.0 if self.judgment(int(v)) else 0.0 for v in values], None
        return values, None
