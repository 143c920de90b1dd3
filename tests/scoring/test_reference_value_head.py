"""``value-head`` against SkyworkAI's ``prepare_input`` and ``derive_step_rewards``
(skywork-o1-prm-inference, ``model_utils/io_utils.py``) with ``PRM_MODEL``'s
``return_probs=True`` read-out (``model_utils/prm_model.py``), re-implemented here line by
line on tiny checkpoints in that layout: once with a Qwen2 tokenizer (no BOS added by
``encode``), once with one that adds a BOS to every ``encode``."""

from __future__ import annotations

import pytest
import torch

from scoring.engine import score_traces
from scoring.tiny import HARD_TRACES

TOL = 1e-4


def _prepare_input(problem, response, tokenizer, step_token):
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    response_ids = []
    steps = []
    reward_flags = [0] * len(prompt_ids)
    step_token_id = tokenizer.encode(step_token)[-1]
    for step in response.split(step_token):
        step_ids = tokenizer.encode(step) if step != "" else []
        step_ids += [step_token_id]
        step = step + step_token
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
        steps.append(step)
    input_ids = prompt_ids + response_ids
    return input_ids, steps, reward_flags


def _prm_rewards(directory, input_ids) -> list[float]:
    """PRM_MODEL.forward(return_probs=True): sigmoid(v_head(hidden_states[-1]))."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(directory).eval()
    weights = load_file(str(directory / "model.safetensors"))
    summary = torch.nn.Linear(backbone.config.hidden_size, 1)
    summary.load_state_dict(
        {"weight": weights["v_head.summary.weight"], "bias": weights["v_head.summary.bias"]}
    )
    with torch.no_grad():
        out = backbone(input_ids=torch.tensor([input_ids]), output_hidden_states=True)
        value = summary(out.hidden_states[-1]).squeeze(-1)
    return torch.sigmoid(value)[0].tolist()


@pytest.fixture(scope="module", params=["skywork", "bos-adding"])
def value_head_dir(request, tmp_path_factory):
    from scoring.tiny import build_value_head, llama3_tokenizer, skywork_tokenizer

    tokenizer = skywork_tokenizer() if request.param == "skywork" else llama3_tokenizer()
    return build_value_head(tmp_path_factory.mktemp(f"value-{request.param}"), tokenizer)


def test_value_head_reproduces_skywork_prepare_input(value_head_dir, traces) -> None:
    from transformers import AutoTokenizer

    from scoring.adapters import load_adapter

    tokenizer = AutoTokenizer.from_pretrained(value_head_dir)
    adapter = load_adapter("value-head", str(value_head_dir), device="cpu", protocol="card")
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        input_ids, _, reward_flags = _prepare_input(
            trace.problem, "\n".join(trace.steps), tokenizer, "\n"
        )
        rewards = _prm_rewards(value_head_dir, input_ids)
        # derive_step_rewards: one reward per line of the response
        line_rewards = [rewards[i] for i, flag in enumerate(reward_flags) if flag == 1]
        # a step of m lines is m of those; its score is its last line's
        last_lines, count = [], 0
        for step in trace.steps:
            count += len(step.split("\n"))
            last_lines.append(count - 1)
        expected = [line_rewards[i] for i in last_lines]
        assert len(result.scores) == len(trace.steps)
        assert max(abs(a - b) for a, b in zip(result.scores, expected, strict=True)) <= TOL
    spread = [s for r in results for s in r.scores]
    assert max(spread) - min(spread) > 1e-2


def test_value_head_refuses_a_tokenizer_without_bos_token(tmp_path) -> None:
    from scoring.adapters import load_adapter
    from scoring.tiny import build_value_head, qwen_tokenizer

    path = build_value_head(tmp_path, qwen_tokenizer())
    with pytest.raises(ValueError, match="no bos_token"):
        load_adapter("value-head", str(path), device="cpu")
