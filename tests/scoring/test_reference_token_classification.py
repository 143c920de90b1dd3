"""``token-classification`` against TRL's ``PRMTrainer.tokenize_row``
(``trl/experimental/prm/prm_trainer.py``), re-implemented here line by line, on a tiny
token-classification checkpoint with a BOS-adding tokenizer: each step's score is
P(LABEL_1) where tokenize_row puts that step's label."""

from __future__ import annotations

from itertools import chain

import pytest
import torch

from scoring.engine import score_traces
from scoring.tiny import HARD_TRACES

TOL = 1e-4


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    from scoring.tiny import build_token_classifier, llama3_tokenizer

    return build_token_classifier(tmp_path_factory.mktemp("trl-prm"), llama3_tokenizer())


def _tokenize_row(features, tokenizer, step_separator):
    """tokenize_row with max_length and max_completion_length None, training labels."""
    prompt_ids = tokenizer(features["prompt"], add_special_tokens=False)["input_ids"]
    completions_ids = [
        tokenizer(completion, add_special_tokens=False)["input_ids"]
        for completion in features["completions"]
    ]
    labels = [int(label) for label in features["labels"]]
    separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)
    completions_ids = [completion + separator_ids for completion in completions_ids]
    labels = [
        [-100] * (len(completion) - 1) + [label]
        for completion, label in zip(completions_ids, labels, strict=True)
    ]
    completion_ids = list(chain(*completions_ids))
    labels = list(chain(*labels))
    if tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    input_ids = prompt_ids + completion_ids
    labels = [-100] * len(prompt_ids) + labels
    return {"input_ids": input_ids, "labels": labels}


@pytest.mark.parametrize("separator", ["\n", "\n\n"])
def test_token_classification_reproduces_trl_tokenize_row(
    classifier_dir, traces, separator
) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from scoring.adapters import load_adapter

    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    model = AutoModelForTokenClassification.from_pretrained(classifier_dir).eval()
    adapter = load_adapter(
        "token-classification", str(classifier_dir), device="cpu", step_separator=separator
    )
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        row = _tokenize_row(
            {
                "prompt": trace.problem,
                "completions": list(trace.steps),
                "labels": [1] * len(trace.steps),
            },
            tokenizer,
            separator,
        )
        with torch.no_grad():
            logits = model(torch.tensor([row["input_ids"]])).logits[0]
        labelled = [i for i, label in enumerate(row["labels"]) if label != -100]
        expected = logits[labelled].softmax(-1)[:, 1].tolist()
        assert len(result.scores) == len(expected) == len(trace.steps)
        assert max(abs(a - b) for a, b in zip(result.scores, expected, strict=True)) <= TOL
    spread = [s for r in results for s in r.scores]
    assert max(spread) - min(spread) > 1e-2
