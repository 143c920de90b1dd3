"""``math-shepherd`` against the math-shepherd-mistral-7b-prm model card's snippet,
re-implemented here line by line on a tiny Mistral-layout checkpoint (SentencePiece-like
tokenizer with BOS, `` ки`` step tags)."""

from __future__ import annotations

import pytest
import torch

from scoring.engine import score_traces
from scoring.tiny import HARD_TRACES

TOL = 1e-4


@pytest.fixture(scope="module")
def shepherd_dir(tmp_path_factory):
    from scoring.tiny import build_causal_lm, mistral_tokenizer

    return build_causal_lm(tmp_path_factory.mktemp("shepherd"), mistral_tokenizer(), "mistral")


def _card_step_scores(tokenizer, model, question: str, steps: list[str]) -> list[float]:
    good_token, bad_token, step_tag = "+", "-", "ки"
    candidate_tokens = tokenizer.encode(f"{good_token} {bad_token}")[1:]
    step_tag_id = tokenizer.encode(f"{step_tag}")[-1]
    # the card's outputs: "Step 1: ... ки\nStep 2: ... ки"
    output = "\n".join(f"Step {i + 1}: {step} {step_tag}" for i, step in enumerate(steps))
    input_for_prm = f"{question} {output}"
    input_id = torch.tensor([tokenizer.encode(input_for_prm)])
    with torch.no_grad():
        logits = model(input_id).logits[:, :, candidate_tokens]
        scores = logits.softmax(dim=-1)[:, :, 0]
        step_scores = scores[input_id == step_tag_id]
    return step_scores.tolist()


def test_math_shepherd_reproduces_the_model_card(shepherd_dir, traces) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scoring.adapters import load_adapter

    tokenizer = AutoTokenizer.from_pretrained(shepherd_dir)
    model = AutoModelForCausalLM.from_pretrained(shepherd_dir).eval()
    adapter = load_adapter("math-shepherd", str(shepherd_dir), device="cpu", protocol="card")
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        expected = _card_step_scores(tokenizer, model, trace.problem, list(trace.steps))
        assert len(result.scores) == len(expected) == len(trace.steps)
        assert max(abs(a - b) for a, b in zip(result.scores, expected, strict=True)) <= TOL
    spread = [s for r in results for s in r.scores]
    assert max(spread) - min(spread) > 1e-2
