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
    assert shepherd.render(trace) == (
        "What is 5 * 12? Step 1: 5 * 12 = 60 eggs. ки\nStep 2: \\boxed{60} ки"
    )
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
    from scoring.tiny import build_value_head, skywork_tokenizer

    path = build_value_head(tmp_path_factory.mktemp("value-head"), skywork_tokenizer())
    return load_adapter("value-head", str(path), device="cpu")


def test_value_head_builds_skywork_input(value_head, traces) -> None:
    tok = value_head.tokenizer
    trace = traces[1]
    encoded = value_head.encode(trace)
    newline = tok.encode("\n")[-1]
    expected = tok.encode("<|endoftext|>What is 5 * 12?\n") + tok.encode("5 * 12 = 60 eggs.")
    expected += [newline]
    expected += tok.encode("\\boxed{60}") + [newline]
    assert list(encoded.input_ids) == expected
    assert [encoded.input_ids[p] for p in encoded.positions] == [newline, newline]
    assert encoded.positions[-1] == len(expected) - 1


def test_value_head_scores_are_sigmoid_of_the_head(value_head, traces) -> None:
    [result] = score_traces(value_head, [traces[0]])
    assert result.raw is not None
    assert result.scores == pytest.approx([1 / (1 + math.exp(-v)) for v in result.raw])
    _assert_one_pass_equals_prefixes(value_head, traces)


def _skywork_prepare_input(problem: str, response: str, tokenizer, step_token: str = "\n"):
    """SkyworkAI's ``prepare_input`` (skywork-o1-prm-inference, model_utils/io_utils.py)."""
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    response_ids = []
    reward_flags = [0] * len(prompt_ids)
    step_token_id = tokenizer.encode(step_token)[-1]
    for step in response.split(step_token):
        step_ids = tokenizer.encode(step) if step != "" else []
        step_ids += [step_token_id]
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
    return prompt_ids + response_ids, reward_flags


@pytest.fixture(scope="module")
def value_head_with_bos(tmp_path_factory):
    """A value-head PRM whose tokenizer prepends BOS on every ``encode``."""
    from scoring.adapters import load_adapter
    from scoring.tiny import build_value_head, llama3_tokenizer

    path = build_value_head(tmp_path_factory.mktemp("value-head-bos"), llama3_tokenizer())
    return load_adapter("value-head", str(path), device="cpu")


@pytest.mark.parametrize("adapter_name", ["value_head", "value_head_with_bos"])
def test_value_head_keeps_an_empty_step_as_skywork_does(adapter_name, request) -> None:
    adapter = request.getfixturevalue(adapter_name)
    tok = adapter.tokenizer
    steps = ("5 * 12 = 60 eggs.", "", "\\boxed{60}")
    trace = Trace("What is 5 * 12?", steps)
    input_ids, flags = _skywork_prepare_input(trace.problem, "\n".join(steps), tok)
    encoded = adapter.encode(trace)
    assert list(encoded.input_ids) == input_ids
    assert list(encoded.positions) == [i for i, flag in enumerate(flags) if flag]
    # the empty step is a bare step token right after step 0's
    assert encoded.positions[1] == encoded.positions[0] + 1
    result, without = score_traces(adapter, [trace, Trace(trace.problem, (steps[0], steps[2]))])
    assert len(result.scores) == 3
    assert result.scores[0] == pytest.approx(without.scores[0], abs=TOL)


# --- implicit-prm ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def implicit(qwen_lm_dirs):
    from scoring.adapters import load_adapter

    policy, ref = qwen_lm_dirs
    return load_adapter("implicit-prm", str(policy), ref_model=str(ref), device="cpu", beta=0.5)


@pytest.fixture(scope="module")
def implicit_llama(tmp_path_factory):
    """Llama 3's chat template trims message content."""
    from scoring.adapters import load_adapter
    from scoring.tiny import build_causal_lm, llama3_tokenizer

    tokenizer = llama3_tokenizer()
    policy = build_causal_lm(tmp_path_factory.mktemp("lpolicy"), tokenizer, "llama", seed=1)
    ref = build_causal_lm(tmp_path_factory.mktemp("lref"), tokenizer, "llama", seed=2)
    return load_adapter("implicit-prm", str(policy), ref_model=str(ref), device="cpu", beta=0.5)


# A step ending, and one starting, with "≡", which the byte-level tokenizer splits in 3 tokens.
MULTIBYTE = Trace("Is 12 ≡ 5?", ("12 - 5 = 7, so 12 ≡", "≡ 5 (mod 7) is é", "\\boxed{7}"), id="mb")


def _eurus_reference(adapter, problem: str, steps: list[str]) -> list[float]:
    """EurusPRM's reference script, line by line, with prm_eval_utils.py's two Llama-3
    lines: ``step_last_tokens`` from the token counts of the stripped chat cut after each
    step, one forward over the whole chat, the masked log-ratio cumsum gathered at
    ``step_last_tokens[1:]``."""
    tok = adapter.tokenizer

    def chat(k):
        return [
            {"role": "user", "content": problem},
            {"role": "assistant", "content": "\n\n".join(steps[:k])},
        ]

    input_ids = tok.apply_chat_template(
        chat(len(steps)),
        tokenize=True,
        add_generation_prompt=False,
        return_tensors="pt",
        return_dict=False,
    )
    attention_mask = input_ids != tok.pad_token_id
    step_last_tokens = []
    for step_num in range(0, len(steps) + 1):
        conv = tok.apply_chat_template(chat(step_num), tokenize=False, add_generation_prompt=False)
        conv = conv.strip()
        header = "<|start_header_id|>assistant<|end_header_id|>"
        if step_num != len(steps) and conv.endswith(header):
            conv = conv[: -len(header)]
        if step_num != len(steps) and conv.endswith("<|eot_id|>"):
            conv = conv[: -len("<|eot_id|>")]
        if step_num != 0 and step_num != len(steps):
            conv += "\n\n"
        currect_ids = tok.encode(conv, add_special_tokens=False)
        step_last_tokens.append(len(currect_ids) - 2)
    n = input_ids.shape[-1]
    label_mask = torch.tensor([[0] * step_last_tokens[0] + [1] * (n - step_last_tokens[0])])

    def get_logps(model):
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        labels = input_ids[:, 1:].clone().long()
        logits = logits[:, :-1, :]
        return torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)

    raw_reward = get_logps(adapter.model) - get_logps(adapter.ref_model)
    beta_reward = (adapter.beta * raw_reward * label_mask[:, 1:]).cumsum(-1)
    return beta_reward.gather(dim=-1, index=torch.tensor([step_last_tokens[1:]]))[0].tolist()


def _sigmoid(values) -> list[float]:
    return [1 / (1 + math.exp(-v)) for v in values]


def test_implicit_prm_matches_the_eurus_reference_script(implicit, traces) -> None:
    batch = [*traces, MULTIBYTE]
    results = list(score_traces(implicit, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        expected = _eurus_reference(implicit, trace.problem, list(trace.steps))
        assert list(result.raw) == pytest.approx(expected, abs=TOL)
        assert result.scores == pytest.approx(_sigmoid(expected), abs=TOL)
    all_q = [q for r in results for q in r.raw]
    assert max(all_q) - min(all_q) > 1e-2


def test_implicit_prm_sums_from_the_header_newline_through_the_next_steps_first_token(
    implicit, traces
) -> None:
    trace = traces[0]
    encoded = implicit.encode(trace)
    tok = implicit.tokenizer
    ids = list(encoded.input_ids)
    assert tok.decode(ids).endswith(
        "<|im_start|>assistant\n" + "\n\n".join(trace.steps) + "<|im_end|>\n"
    )
    # the sum starts at the "\n" closing the assistant header
    assert tok.decode(ids[: encoded.response_start]).endswith("<|im_start|>assistant")
    assert tok.decode(ids[encoded.response_start :]).startswith("\nShe starts")
    # steps 1, 2 run through "\n\n" and the next step's first token; step 3 through <|im_end|>
    ends = [tok.decode(ids[: p + 1]) for p in encoded.positions]
    assert ends[0].endswith("She starts with 3 apples.\n\nShe")
    assert ends[1].endswith("3 + 4 = 7.\n\nThe")
    assert ends[2].endswith("\\boxed{7}.<|im_end|>")


def test_implicit_prm_sums_every_byte_token_of_a_split_last_character(implicit) -> None:
    encoded = implicit.encode(MULTIBYTE)
    tok = implicit.tokenizer
    ids = list(encoded.input_ids)
    first, second = encoded.positions[:2]
    # "≡" is 3 byte tokens; all of them, and the separator, are summed into q_1
    assert tok.convert_ids_to_tokens(ids[first - 2 : first + 1]) == ["Ċ", "Ċ", "â"]
    assert tok.decode(ids[: first - 1]).endswith("12 ≡\n")
    assert tok.decode(ids[: second + 1]).endswith("is é\n\n\\")


def test_implicit_prm_step_scores_depend_on_text_through_the_next_steps_first_token(
    implicit, traces
) -> None:
    # One pass over the full trace gives, for every step but the last of each prefix, the
    # q that scoring the prefix alone gives; the prefix's own last q ends in <|im_end|>.
    for trace in [*traces, MULTIBYTE]:
        [full] = score_traces(implicit, [trace])
        n = len(trace.steps)
        for m in range(1, n + 1):
            [prefix] = score_traces(implicit, [trace.prefix(m)])
            assert list(prefix.raw[: m - 1]) == pytest.approx(full.raw[: m - 1], abs=TOL)
            if m == n:
                assert prefix.raw[-1] == pytest.approx(full.raw[-1], abs=TOL)
            else:
                assert abs(prefix.raw[-1] - full.raw[m - 1]) > 1e-3


@pytest.mark.parametrize(
    "steps",
    [
        ("", "She buys 4 more."),
        ("  ", "She buys 4 more."),
        ("She starts with 3 apples.", "", "The answer is \\boxed{7}."),
        ("She starts with 3 apples.", ""),
        ("",),
    ],
)
def test_implicit_prm_reads_an_empty_step_where_the_reference_does(implicit, steps) -> None:
    trace = Trace("How many apples?", steps, id="e")
    encoded = implicit.encode(trace)
    # no read-out before the response, where a negative index would wrap round
    assert all(p >= encoded.response_start - 1 for p in encoded.positions)
    [result] = score_traces(implicit, [trace])
    reference = _eurus_reference(implicit, trace.problem, list(steps))
    assert list(result.raw) == pytest.approx(reference, abs=TOL)
    assert result.scores == pytest.approx(_sigmoid(result.raw))


def test_implicit_prm_handles_a_template_that_trims_content(implicit_llama) -> None:
    trace = Trace(
        "How many apples?",
        ("  She starts with 3 apples.", "She buys 4 more, so 3 + 4 = 7. ", "\\boxed{7}  "),
        id="trim",
    )
    tok = implicit_llama.tokenizer
    text = tok.apply_chat_template(
        [
            {"role": "user", "content": trace.problem},
            {"role": "assistant", "content": "\n\n".join(trace.steps)},
        ],
        tokenize=False,
    )
    assert "<|end_header_id|>\n\nShe starts" in text and "\\boxed{7}<|eot_id|>" in text
    [result] = score_traces(implicit_llama, [trace])
    expected = _eurus_reference(implicit_llama, trace.problem, list(trace.steps))
    assert list(result.raw) == pytest.approx(expected, abs=TOL)
    encoded = implicit_llama.encode(trace)
    ends = [tok.decode(list(encoded.input_ids[: p + 1])) for p in encoded.positions]
    # prm_eval_utils.py cuts <|eot_id|> off the cut chat: q_1 ends at the separator here
    assert ends[0].endswith("3 apples.\n\n")
    assert ends[-1].endswith("\\boxed{7}<|eot_id|>")


def test_implicit_prm_needs_a_reference_model(qwen_lm_dirs) -> None:
    from scoring.adapters import load_adapter

    with pytest.raises(ValueError, match="ref_model"):
        load_adapter("implicit-prm", str(qwen_lm_dirs[0]), device="cpu")


# --- every model adapter -----------------------------------------------------------------

MODEL_ADAPTERS = ["qwen_prm", "shepherd", "rlhflow", "token_classifier", "value_head", "implicit"]


@pytest.mark.parametrize("adapter_name", MODEL_ADAPTERS)
def test_a_trace_without_steps_gets_empty_scores_and_the_run_goes_on(
    adapter_name, request, traces
) -> None:
    adapter = request.getfixturevalue(adapter_name)
    batch = [
        Trace("What is 2 + 2?", (), id="empty-0"),
        traces[0],
        Trace("What is 5 * 12?", (), id="empty-1"),
        traces[1],
    ]
    seen = []
    results = list(
        score_traces(adapter, batch, batch_tokens=100_000, progress=lambda d, t: seen.append(d))
    )
    assert [r.trace_id for r in results] == ["empty-0", "t-0", "empty-1", "t-1"]
    assert results[0].scores == results[2].scores == ()
    assert results[0].adapter == adapter.name and results[0].n_tokens == 0
    alone = list(score_traces(adapter, [traces[0], traces[1]]))
    for got, expected in zip([results[1], results[3]], alone, strict=True):
        assert len(got.scores) > 0
        assert got.scores == pytest.approx(expected.scores, abs=TOL)
    assert seen[-1] == 4
    only_empty = list(score_traces(adapter, [batch[0], batch[2]]))
    assert [r.scores for r in only_empty] == [(), ()]


def test_rlhflow_reads_before_plus_after_a_step_ending_in_a_split_character(rlhflow) -> None:
    trace = Trace("Is 12 ≡ 5?", ("so 12 ≡", "≡ 5 (mod 7) é"))
    encoded = rlhflow.encode(trace)
    tokens = _tokens(rlhflow, encoded.input_ids)
    for p in encoded.positions:
        assert tokens[p + 1 : p + 3] == ["+", "<|eot_id|>"]
    _assert_one_pass_equals_prefixes(rlhflow, [trace])
