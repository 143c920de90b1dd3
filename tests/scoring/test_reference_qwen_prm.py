"""``qwen-prm`` against the Qwen2.5-Math-PRM model card's usage snippet, re-implemented here
line by line on a tiny checkpoint in the hub layout (loaded with its remote code, as the
card does)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scoring.engine import score_traces
from scoring.tiny import HARD_TRACES

TOL = 1e-4


def _card_step_rewards(path, problem: str, steps: list[str]) -> list[float]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
    messages = [
        {
            "role": "system",
            "content": "Please reason step by step, and put your final answer within \\boxed{}.",
        },
        {"role": "user", "content": problem},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    conversation_str = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=False
    )
    input_ids = tokenizer.encode(conversation_str, return_tensors="pt")
    with torch.no_grad():
        outputs = model(input_ids=input_ids)
    step_sep_id = tokenizer.encode("<extra_0>")[0]
    token_masks = input_ids == step_sep_id
    # make_step_rewards
    probabilities = F.softmax(outputs[0], dim=-1)
    probabilities = probabilities * token_masks.unsqueeze(-1)
    sample = probabilities[0]
    return sample[sample != 0].view(-1, 2)[:, 1].cpu().tolist()


def test_qwen_prm_reproduces_the_model_card(qwen_prm_dir, traces) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu", protocol="card")
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        expected = _card_step_rewards(qwen_prm_dir, trace.problem, list(trace.steps))
        assert len(result.scores) == len(expected) == len(trace.steps)
        assert max(abs(a - b) for a, b in zip(result.scores, expected, strict=True)) <= TOL
    spread = [s for r in results for s in r.scores]
    assert max(spread) - min(spread) > 1e-2


def test_qwen_prm_knows_only_the_card_protocol(qwen_prm_dir) -> None:
    from scoring.adapters import load_adapter

    with pytest.raises(ValueError, match="unknown protocol 'processbench'"):
        load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu", protocol="processbench")
