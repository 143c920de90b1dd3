"""Tiny random-weight models in the real formats, built once per session into a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.types import Trace

# Steps with digits, operators and punctuation, of different lengths, so batches need padding.
TRACES = [
    Trace(
        problem="Janet has 3 apples and buys 4 more. How many apples?",
        steps=(
            "She starts with 3 apples.",
            "She buys 4 more, so 3 + 4 = 7.",
            "The answer is \\boxed{7}.",
        ),
        id="t-0",
    ),
    Trace(problem="What is 5 * 12?", steps=("5 * 12 = 60 eggs.", "\\boxed{60}"), id="t-1"),
    Trace(
        problem="Each box holds 12 eggs. How many eggs do 5 boxes hold, minus 13?",
        steps=(
            "Each box holds 12 eggs.",
            "5 boxes hold 5 * 12 = 60 eggs.",
            "Then 60 - 13 = 47.",
            "She earns $15 per hour for 8 hours.",
            "The total is \\boxed{47}.",
        ),
        id="t-2",
    ),
]


@pytest.fixture(scope="session")
def traces() -> list[Trace]:
    return TRACES


@pytest.fixture(scope="session")
def qwen_prm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scoring.tiny import build_qwen_prm

    return build_qwen_prm(tmp_path_factory.mktemp("qwen-prm"))


@pytest.fixture(scope="session")
def qwen_lm_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two Qwen2-style causal LMs sharing a tokenizer: a policy and a reference."""
    from scoring.tiny import build_causal_lm, qwen_tokenizer

    tokenizer = qwen_tokenizer()
    policy = build_causal_lm(tmp_path_factory.mktemp("policy"), tokenizer, "qwen2", seed=1)
    ref = build_causal_lm(tmp_path_factory.mktemp("ref"), tokenizer, "qwen2", seed=2)
    return policy, ref
