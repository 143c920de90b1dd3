"""Every model adapter on a tiny random model in its real format: the exact input it builds,
the read-out positions, and one-pass scores equal to prefix-by-prefix scores (within 1e-4)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from scoring.engine import score_by_prefixes, score_traces
from scoring.types import Trace

TOL = 1e-4


def _assert_one_pass_equals_prefixes(adapter, traces: list[Trace]) -> None:
    # batch_tokens large enough that all traces share one padded batch
    batched = list(score_traces(adapter, traces, batch_tokens=100_000))
    assert [r.trace_id for r in batched] == [t.id for t in traces]
    for trace, result in zip(traces, batched, strict=True):
        assert len(result.scores) == len(trace.steps)
        prefixes = score_by_prefixes(adapter, trace)
        assert max(abs(a - b) for a, b in zip(result.scores, prefixes, strict=True)) < TOL
    # a read-out at the wrong position would still pass if the outputs were constant
    all_scores = [s for r in batched for s in r.scores]
    assert max(all_scores) - min(all_scores) > 1e-3


def _tokens(adapter, ids) -> list[str]:
    return adapter.tokenizer.convert_ids_to_tokens(list(ids))


# --- qwen-prm ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_prm(qwen_prm_dir: Path):
    from scoring.adapters import load_adapter

    return load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")


def test_qwen_prm_builds_the_model_card_input(qwen_prm, traces) -> None:
    trace = traces[1]
    assert qwen_prm.render(trace) == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 5 * 12?<|im_end|>\n"
        "<|im_start|>assistant\n5 * 12 = 60 eggs.<extra_0>\\boxed{60}<extra_0><|im_end|>\n"
    )
    encoded = qwen_prm.encode(trace)
    tokens = _tokens(qwen_prm, encoded.input_ids)
    assert [tokens[p] for p in encoded.positions] == ["<extra_0>", "<extra_0>"]
    assert tokens[encoded.positions[0] - 1] == "."  # right after "eggs."
    assert tokens[-2:] == ["<|im_end|>", "Ċ"]
    assert qwen_prm.tokenizer.decode(list(encoded.input_ids)) == qwen_prm.render(trace)


def test_qwen_prm_one_pass_equals_prefixes(qwen_prm, traces) -> None:
    _assert_one_pass_equals_prefixes(qwen_prm, traces)


def test_qwen_prm_reads_softmax_index_1_at_each_separator(qwen_prm, traces) -> None:
    # The model card's make_step_rewards, on one trace, unbatched.
    trace = traces[0]
    ids = torch.tensor([qwen_prm.tokenizer.encode(qwen_prm.render(trace))])
    with torch.no_grad():
        logits = qwen_prm.model(input_ids=ids)[0]
    probs = logits.softmax(-1) * (ids == qwen_prm.tokenizer.encode("<extra_0>")[0]).unsqueeze(-1)
    sample = probs[0]
    expected = sample[sample != 0].view(-1, 2)[:, 1].tolist()
    [result] = score_traces(qwen_prm, [trace])
    assert result.scores == pytest.approx(expected, abs=TOL)


def test_qwen_prm_loads_natively_and_with_remote_code_alike(qwen_prm, qwen_prm_dir, traces) -> None:
    from safetensors import safe_open

    from scoring.adapters import load_adapter

    with safe_open(str(qwen_prm_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"} <= keys
    assert "model.embed_tokens.weight" in keys
    remote = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu", trust_remote_code=True)
    assert type(remote.model).__module__.startswith("transformers_modules")
    native = [r.scores for r in score_traces(qwen_prm, traces)]
    via_remote = [r.scores for r in score_traces(remote, traces)]
    for a, b in zip(native, via_remote, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_qwen_prm_rejects_a_step_containing_the_separator(qwen_prm) -> None:
    with pytest.raises(ValueError, match="3 step read-outs for 2 steps"):
        qwen_prm.encode(Trace("q", ("a<extra_0>b", "c")))


# --- math-shepherd -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shepherd(tmp_path_factory):
    from scoring.adapters import load_adapter
    from scoring.tiny import build_causal_lm, mistral_tokenizer

    path = build_causal_lm(tmp_path_factory.mktemp("shepherd"), mistral_tokenizer(), "mistral")
    return load_adapter("math-shepherd", str(path), device="cpu")


def test_math_shepherd_builds_the_model_card_input(shepherd, traces) -> None:
    trace = traces[1]
    assert shepherd.render(trace) == "What is 5 * 12? 5 * 12 = 60 eggs. ки\n\\boxed{60} ки"
    tok = shepherd.tokenizer
    assert _tokens(shepherd, [shepherd.good_id, shepherd.bad_id]) == ["▁+", "▁-"]
    assert shepherd.tag_id == tok.encode("ки")[-1] == tok.convert_tokens_to_ids("▁ки")
    encoded = shepherd.encode(trace)
    tokens = _tokens(shepherd, encoded.input_ids)
    assert tokens[0] == "<s>"
    assert [tokens[p] for p in encoded.positions] == ["▁ки", "▁ки"]
    assert encoded.positions[1] == len(tokens) - 1
    assert tokens[encoded.positions[0] + 1] == "\n"


def test_math_shepherd_one_pass_equals_prefixes(shepherd, traces) -> None:
    _assert_one_pass_equals_prefixes(shepherd, traces)


def test_math_shepherd_reads_p_plus_over_plus_minus(shepherd, traces) -> None:
    trace = traces[0]
    ids = torch.tensor([shepherd.tokenizer.encode(shepherd.render(trace))])
    with torch.no_grad():
        logits = shepherd.model(ids).logits[:, :, [shepherd.good_id, shepherd.bad_id]]
    expected = logits.softmax(-1)[:, :, 0][ids == shepherd.tag_id].tolist()
    [result] = score_traces(shepherd, [trace])
    assert result.scores == pytest.approx(expected, abs=TOL)


# --- rlhflow -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rlhflow(tmp_path_factory):
    from scoring.adapters import load_adapter
    from scoring.tiny import build_causal_lm, llama3_tokenizer

    path = build_causal_lm(tmp_path_factory.mktemp("rlhflow"), llama3_tokenizer(), "llama")
    return load_adapter("rlhflow", str(path), device="cpu")


def test_rlhflow_builds_the_multi_turn_chat(rlhflow, traces) -> None:
    trace = traces[1]
    assert rlhflow.conversation(trace) == [
        {"role": "user", "content": "What is 5 * 12? 5 * 12 = 60 eggs."},
        {"role": "assistant", "content": "+"},
        {"role": "user", "content": "\\boxed{60}"},
        {"role": "assistant", "content": "+"},
    ]
    encoded = rlhflow.encode(trace)
    tokens = _tokens(rlhflow, encoded.input_ids)
    assert tokens[0] == "<|begin_of_text|>"
    for p in encoded.positions:
        # the read-out is the last token of the assistant header, right before "+"
        assert rlhflow.tokenizer.decode(list(encoded.input_ids[: p + 1])).endswith(
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )
        assert tokens[p + 1 : p + 3] == ["+", "<|eot_id|>"]
    assert encoded.positions[-1] == len(tokens) - 3  # the reference's logits[:, -3]


def test_rlhflow_one_pass_equals_the_reference_per_step_loop(rlhflow, traces) -> None:
    # RLHFlow's script: grow the conversation one step at a time, read logits at -3.
    tok = rlhflow.tokenizer
    plus, minus = tok.encode("+")[-1], tok.encode("-")[-1]
    results = list(score_traces(rlhflow, traces, batch_tokens=100_000))
    for trace, result in zip(traces, results, strict=True):
        conversation = rlhflow.conversation(trace)
        expected = []
        for k in range(len(trace.steps)):
            ids = tok.apply_chat_template(
                conversation[: 2 * k + 2], return_tensors="pt", return_dict=False
            )
            with torch.no_grad():
                logits = rlhflow.model(ids).logits[:, -3, [plus, minus]]
            expected.append(logits.softmax(-1)[0, 0].item())
        assert result.scores == pytest.approx(expected, abs=TOL)
    _assert_one_pass_equals_prefixes(rlhflow, traces)


# --- token-classification ----------------------------------------------------------------


@pytest.fixture(scope="module")
def token_classifier(tmp_path_factory):
    from scoring.adapters import load_adapter
    from scoring.tiny import build_token_classifier, llama3_tokenizer

    path = build_token_classifier(tmp_path_factory.mktemp("trl-prm"), llama3_tokenizer())
    return load_adapter("token-classification", str(path), device="cpu")


def test_token_classification_tokenizes_prompt_and_steps_separately(
    token_classifier, traces
) -> None:
    tok = token_classifier.tokenizer
    trace = traces[1]
    encoded = token_classifier.encode(trace)
    sep = tok.encode("\n", add_special_tokens=False)
    step0 = tok("5 * 12 = 60 eggs.", add_special_tokens=False)["input_ids"]
    step1 = tok("\\boxed{60}", add_special_tokens=False)["input_ids"]
    prompt = tok("What is 5 * 12?", add_special_tokens=False)["input_ids"]
    assert list(encoded.input_ids) == [tok.bos_token_id, *prompt, *step0, *sep, *step1, *sep]
    assert encoded.positions == (len(prompt) + len(step0) + len(sep), len(encoded.input_ids) - 1)


def test_token_classification_one_pass_equals_prefixes(token_classifier, traces) -> None:
    _assert_one_pass_equals_prefixes(token_classifier, traces)


# --- value-head --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def value_head(tmp_path_factory):
    from scoring.adapters import load_adapter
    from scoring.tiny import build_value_head, qwen_tokenizer

    path = build_value_head(tmp_path_factory.mktemp("value-head"), qwen_tokenizer())
    return load_adapter("value-head", str(path), device="cpu")


def test_value_head_builds_skywork_input(value_head, traces) -> None:
    tok = value_head.tokenizer
    trace = traces[1]
    encoded = value_head.encode(trace)
    newline = tok.encode("\n")[-1]
    expected = tok.encode("What is 5 * 12?\n") + tok.encode("5 * 12 = 60 eggs.") + [newline]
    expected += tok.encode("\\boxed{60}") + [newline]
    assert list(encoded.input_ids) == expected
    assert [encoded.input_ids[p] for p in encoded.positions] == [newline, newline]
    assert encoded.positions[-1] == len(expected) - 1


def test_value_head_scores_are_sigmoid_of_the_head(value_head, traces) -> None:
    [result] = score_traces(value_head, [traces[0]])
    assert result.raw is not None
    assert result.scores == pytest.approx([1 / (1 + math.exp(-v)) for v in result.raw])
    _assert_one_pass_equals_prefixes(value_head, traces)


# --- implicit-prm ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def implicit(qwen_lm_dirs):
    from scoring.adapters import load_adapter

    policy, ref = qwen_lm_dirs
    return load_adapter("implicit-prm", str(policy), ref_model=str(ref), device="cpu", beta=0.5)


def test_implicit_prm_reads_each_steps_last_token(implicit, traces) -> None:
    trace = traces[0]
    encoded = implicit.encode(trace)
    tok = implicit.tokenizer
    text = tok.decode(list(encoded.input_ids))
    assert text.endswith("<|im_start|>assistant\n" + "\n\n".join(trace.steps) + "<|im_end|>\n")
    assert tok.decode(list(encoded.input_ids[encoded.response_start :])).startswith("She starts")
    ends = [tok.decode(list(encoded.input_ids[: p + 1])) for p in encoded.positions]
    for k, end in enumerate(ends):
        assert end.endswith("\n\n".join(trace.steps[: k + 1]))


def _reference_q(adapter, trace: Trace, k: int) -> float:
    """beta * sum of token log-ratios over the response of the chat cut after step k."""
    tok = adapter.tokenizer
    messages = [
        {"role": "user", "content": trace.problem},
        {"role": "assistant", "content": "\n\n".join(trace.steps[:k])},
    ]
    head = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(messages, tokenize=False)
    content = full[: len(head) + len(messages[1]["content"])]
    ids = torch.tensor([tok(content, add_special_tokens=False)["input_ids"]])
    n_head = len(tok(head, add_special_tokens=False)["input_ids"])

    def logps(model):
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        return logits.gather(1, ids[0, 1:, None]).squeeze(1)

    ratio = logps(adapter.model) - logps(adapter.ref_model)
    return adapter.beta * ratio[n_head - 1 :].sum().item()


def test_implicit_prm_q_equals_the_summed_log_ratio_per_prefix(implicit, traces) -> None:
    results = list(score_traces(implicit, traces, batch_tokens=100_000))
    for trace, result in zip(traces, results, strict=True):
        expected = [_reference_q(implicit, trace, k) for k in range(1, len(trace.steps) + 1)]
        assert list(result.raw) == pytest.approx(expected, abs=TOL)
        assert result.scores == pytest.approx([1 / (1 + math.exp(-q)) for q in expected], abs=TOL)
    _assert_one_pass_equals_prefixes(implicit, traces)


def test_implicit_prm_needs_a_reference_model(qwen_lm_dirs) -> None:
    from scoring.adapters import load_adapter

    with pytest.raises(ValueError, match="ref_model"):
        load_adapter("implicit-prm", str(qwen_lm_dirs[0]), device="cpu")
