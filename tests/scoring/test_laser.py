"""LaSeR self-rewards on tiny random causal LMs in Qwen's layout: the engine's numbers equal
the reference's score lines (``RUCBM/LaSeR`` ``src/calculate_self_rewarding_scores.py``),
re-implemented here with a plain transformers forward; the ``laser-cref`` command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scoring.engine import score_traces
from scoring.types import Trace

TOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]
# Qwen2.5's special tokens up to <|vision_start|> (151652 there), the reference's Qwen z_c
QWEN_LASER_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]


def _qwen_laser_tokenizer(eos_token: str):
    from scoring.tiny import QWEN_CHAT_TEMPLATE, train_tokenizer

    return train_tokenizer(
        QWEN_LASER_SPECIAL,
        eos_token=eos_token,
        pad_token="<|endoftext|>",
        chat_template=QWEN_CHAT_TEMPLATE,
    )


# Qwen2.5 base models (Qwen2.5-7B, ORZ-7B) end text with <|endoftext|>, instruct ones with
# <|im_end|>, which the reference's template fix also cuts off the end of the chat.
@pytest.fixture(scope="module", params=["<|endoftext|>", "<|im_end|>"], ids=["base", "instruct"])
def qwen_policy_dir(request, tmp_path_factory) -> Path:
    from scoring.tiny import build_causal_lm

    return build_causal_lm(
        tmp_path_factory.mktemp("laser"), _qwen_laser_tokenizer(request.param), "qwen2", seed=3
    )


@pytest.fixture(scope="module")
def laser(qwen_policy_dir):
    from scoring.adapters import load_adapter

    return load_adapter("laser", str(qwen_policy_dir), device="cpu")


@pytest.fixture(scope="module")
def all_traces(traces) -> list[Trace]:
    from scoring.tiny import HARD_TRACES

    return [*traces, *HARD_TRACES]


def _reference_scores(
    model_dir: Path, traces: list[Trace], token_id: int, ref_constant: float, ratio_coef: float
) -> list[tuple[float, float]]:
    """(log pi(z_c), r_s) per trace, as lines 135, 152, 58-66, 178-181, 196-197 of the
    reference: the solution + eos_token + decode(z_c) as assistant turn, the chat stripped,
    a trailing <|im_end|> and an empty think block cut, tokenized without special tokens;
    vLLM's ``prompt_logprobs[-1][z_c]`` is the log-softmax of the logits one position
    before the last token. One sequence per forward, no padding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    toker = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    specified_token = toker.decode(token_id)
    out = []
    for trace in traces:
        response = "\n\n".join(trace.steps)
        solution = response + toker.eos_token + specified_token
        messages = [
            {"role": "user", "content": trace.problem},
            {"role": "assistant", "content": solution},
        ]
        input_prompt = toker.apply_chat_template(
            messages, add_generation_prompt=False, tokenize=False
        )
        input_prompt = input_prompt.strip()
        if input_prompt[-10:] == "<|im_end|>":
            input_prompt = input_prompt[:-10]
        if "<think>\n\n</think>\n\n" in input_prompt:
            input_prompt = input_prompt.replace("<think>\n\n</think>\n\n", "")
        ids = toker(input_prompt, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()  # (T, V)
        # vLLM's prompt_logprobs: one entry per prompt token, None for the first; entry i
        # scores token i from logits row i - 1, so the last row predicts nothing in the prompt
        prompt_logprobs = [None, *logits[:-1].log_softmax(-1)]
        assert len(prompt_logprobs) == len(ids)
        logprob = float(prompt_logprobs[-1][token_id])
        out.append((logprob, (logprob - ref_constant) * ratio_coef))
    return out


def test_laser_takes_the_reference_defaults_for_qwen(laser) -> None:
    tok = laser.tokenizer
    assert laser.z_c == tok.convert_tokens_to_ids("<|vision_start|>")
    assert laser.z_c_text == "<|vision_start|>"
    assert (laser.c_ref, laser.beta) == (-23.0, 0.1)


def test_laser_appends_z_c_right_after_the_solutions_eos(laser, traces) -> None:
    trace = traces[1]
    eos = laser.tokenizer.eos_token
    assert laser.render(trace) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 5 * 12?<|im_end|>\n"
        f"<|im_start|>assistant\n5 * 12 = 60 eggs.\n\n\\boxed{{60}}{eos}<|vision_start|>"
    )
    encoded = laser.encode(trace)
    tokens = laser.tokenizer.convert_ids_to_tokens(list(encoded.input_ids))
    assert tokens[-2:] == [eos, "<|vision_start|>"]
    # one read-out per step, all at the EOS: the score is one per solution
    assert encoded.positions == (len(tokens) - 2, len(tokens) - 2)


def test_laser_equals_the_reference_score_lines(laser, qwen_policy_dir, all_traces) -> None:
    results = list(score_traces(laser, all_traces, batch_tokens=100_000))
    expected = _reference_scores(qwen_policy_dir, all_traces, laser.z_c, -23.0, 0.1)
    for trace, result, (logprob, r_s) in zip(all_traces, results, expected, strict=True):
        assert result.trace_id == trace.id
        assert result.adapter == "laser"
        assert len(result.scores) == len(trace.steps)
        assert list(result.raw) == pytest.approx([logprob] * len(trace.steps), abs=TOL)
        assert list(result.scores) == pytest.approx([r_s] * len(trace.steps), abs=TOL)
    # a read-out at the wrong position would still pass if the outputs were constant
    logprobs = [logprob for logprob, _ in expected]
    assert max(logprobs) - min(logprobs) > 1e-2


def test_laser_reads_at_the_eos_not_at_z_c(laser, traces) -> None:
    # the position guard: the log-prob of z_c one token later (at z_c itself) differs
    encoded = laser.encode(traces[0])
    with torch.no_grad():
        logps = laser.model(torch.tensor([encoded.input_ids])).logits[0].log_softmax(-1)
    [result] = score_traces(laser, [traces[0]])
    assert result.raw[0] == pytest.approx(float(logps[-2, laser.z_c]), abs=TOL)
    assert abs(result.raw[0] - float(logps[-1, laser.z_c])) > 1e-3


def test_laser_batched_equals_one_by_one(laser, all_traces) -> None:
    # batch_tokens 100_000: one padded batch; alone: one trace per forward, no padding
    batched = list(score_traces(laser, all_traces, batch_tokens=100_000))
    for trace, result in zip(all_traces, batched, strict=True):
        [alone] = score_traces(laser, [trace])
        assert list(result.raw) == pytest.approx(list(alone.raw), abs=TOL)
        assert list(result.scores) == pytest.approx(list(alone.scores), abs=TOL)


def test_laser_options_change_r_s_but_not_log_pi(qwen_policy_dir, traces) -> None:
    from scoring.adapters import load_adapter

    default = load_adapter("laser", str(qwen_policy_dir), device="cpu")
    other = load_adapter(
        "laser", str(qwen_policy_dir), device="cpu", c_ref=-5.0, beta=0.5, z_c="<|vision_start|>"
    )
    for a, b in zip(score_traces(default, traces), score_traces(other, traces), strict=True):
        assert a.raw == pytest.approx(b.raw, abs=TOL)
        assert b.scores[0] == pytest.approx(0.5 * (b.raw[0] + 5.0), abs=TOL)


def test_laser_verdict_is_r_s_above_one_half_as_the_reference() -> None:
    from scoring.adapters.laser import self_reward, self_verification_f1, verdict

    # the reference's lines 329-338: score > 0.5 correct, score <= 0.5 incorrect
    assert [verdict(r) for r in (-1.0, 0.5, 0.5000001, 1.7)] == [False, False, True, True]
    # log pi(z_c) = -18 with the Qwen defaults: r_s = 0.1 * (-18 + 23) = 0.5, not correct
    assert not verdict(self_reward(-18.0, c_ref=-23.0))
    true_acc, false_acc, f1 = self_verification_f1(
        [0.9, 0.6, 0.4, 0.5, 0.1, 0.7], [True, True, True, False, False, False]
    )
    assert (true_acc, false_acc) == pytest.approx((2 / 3, 2 / 3))
    assert f1 == pytest.approx(2 / 3)
    assert self_verification_f1([0.9], [True]) == (1.0, 0.0, 0.0)


# --- families without defaults -----------------------------------------------------------


@pytest.fixture(scope="module")
def mistral_policy_dir(tmp_path_factory) -> Path:
    """A model type the reference gives no z_c or c_ref for (Qwen's tokenizer layout)."""
    from scoring.tiny import build_causal_lm

    tokenizer = _qwen_laser_tokenizer("<|endoftext|>")
    return build_causal_lm(tmp_path_factory.mktemp("laser-mistral"), tokenizer, "mistral", seed=4)


def test_laser_needs_z_c_for_a_family_without_a_default(mistral_policy_dir) -> None:
    from scoring.adapters import load_adapter

    with pytest.raises(ValueError, match="no default z_c for model type 'mistral'.*give z_c="):
        load_adapter("laser", str(mistral_policy_dir), device="cpu")


def test_laser_needs_c_ref_for_a_family_without_a_default(mistral_policy_dir, traces) -> None:
    from scoring.adapters import load_adapter

    path = str(mistral_policy_dir)
    with pytest.raises(ValueError, match="no default c_ref for model type 'mistral'.*laser-cref"):
        load_adapter("laser", path, device="cpu", z_c="<|vision_start|>")
    by_text = load_adapter("laser", path, device="cpu", z_c="<|vision_start|>", c_ref=-7.0)
    by_id = load_adapter("laser", path, device="cpu", z_c=by_text.z_c, c_ref=-7.0)
    expected = _reference_scores(mistral_policy_dir, traces, by_text.z_c, -7.0, 0.1)
    for scorer in (by_text, by_id):
        results = list(score_traces(scorer, traces, batch_tokens=100_000))
        assert [r.scores[0] for r in results] == pytest.approx([e[1] for e in expected], abs=TOL)


def test_laser_refuses_a_qwen_tokenizer_without_the_default_token(qwen_lm_dirs) -> None:
    from scoring.adapters import load_adapter

    policy, _ = qwen_lm_dirs  # scoring.tiny's Qwen tokenizer has no <|vision_start|>
    with pytest.raises(ValueError, match=re.escape("z_c <|vision_start|> (id 151652")):
        load_adapter("laser", str(policy), device="cpu")
    with pytest.raises(ValueError, match="z_c id 151652 is outside the vocabulary"):
        load_adapter("laser", str(policy), device="cpu", z_c=151652)
    with pytest.raises(ValueError, match="'<|nope|>' is not a token"):
        load_adapter("laser", str(policy), device="cpu", z_c="<|nope|>")


def test_laser_reads_after_the_eos_with_a_template_that_ends_the_turn_otherwise(
    tmp_path_factory, traces
) -> None:
    """Llama 3's template closes the turn with <|eot_id|>, which the reference's text keeps
    (its fix cuts only <|im_end|>); we cut after z_c and still read log pi(z_c | x, y, EOS)."""
    from transformers import AutoModelForCausalLM

    from scoring.adapters import load_adapter
    from scoring.tiny import build_causal_lm, llama3_tokenizer

    path = build_causal_lm(tmp_path_factory.mktemp("laser-llama"), llama3_tokenizer(), "llama")
    # llama takes OctoThinker's z_c, which this tokenizer lacks
    with pytest.raises(ValueError, match=re.escape("<|reserved_special_token_0|> (id 128002")):
        load_adapter("laser", str(path), device="cpu")
    laser = load_adapter("laser", str(path), device="cpu", z_c="<|start_header_id|>")
    assert laser.c_ref == -25.0  # OctoThinker's
    tok = laser.tokenizer
    trace = traces[1]
    full = tok.apply_chat_template(
        [
            {"role": "user", "content": trace.problem},
            {
                "role": "assistant",
                "content": "\n\n".join(trace.steps) + "<|eot_id|><|start_header_id|>",
            },
        ],
        tokenize=False,
    ).strip()
    assert full.endswith("<|eot_id|><|start_header_id|><|eot_id|>")
    assert laser.render(trace) == full.removesuffix("<|eot_id|>")
    ids = tok(laser.render(trace), add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logps = model(torch.tensor([ids])).logits[0].log_softmax(-1)  # (T, V)
    [result] = score_traces(laser, [trace])
    assert tok.convert_ids_to_tokens(ids[-2:]) == ["<|eot_id|>", "<|start_header_id|>"]
    assert result.raw[0] == pytest.approx(float(logps[-2, laser.z_c]), abs=TOL)


# --- laser-cref --------------------------------------------------------------------------


def _traces_file(tmp_path: Path, traces: list[Trace]) -> Path:
    path = tmp_path / "traces.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": t.id, "problem": t.problem, "steps": list(t.steps)}) for t in traces
        )
    )
    return path


def _cref(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "scoring", "laser-cref", "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_laser_cref_prints_mean_spread_and_histogram(tmp_path, qwen_policy_dir, all_traces) -> None:
    import statistics

    from transformers import AutoTokenizer

    # the paragraphs splitter drops empty steps, so the file holds the steps it reads back
    clean = [
        Trace(t.problem, tuple(s.strip() for s in t.steps if s.strip()), id=t.id)
        for t in all_traces
    ]
    z_c = AutoTokenizer.from_pretrained(qwen_policy_dir).convert_tokens_to_ids("<|vision_start|>")
    logprobs = [lp for lp, _ in _reference_scores(qwen_policy_dir, clean, z_c, -23.0, 0.1)]
    done = _cref("--model", str(qwen_policy_dir), "--input", str(_traces_file(tmp_path, clean)))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    mean = float(re.search(r"mean (-?\d+\.\d+)", out).group(1))
    std = float(re.search(r"std (\d+\.\d+)", out).group(1))
    assert mean == pytest.approx(statistics.fmean(logprobs), abs=1e-4)
    assert std == pytest.approx(statistics.pstdev(logprobs), abs=1e-4)
    assert std > 1e-3
    assert f"{len(clean)} traces" in out
    assert "the reference's c_ref for this family: -23.0" in out
    bins = [line for line in out.splitlines() if line.startswith("[")]
    assert len(bins) == 20  # the default
    counts = [int(line.split("  ")[1]) for line in bins]
    assert sum(counts) == len(clean)
    assert any(line.endswith("  " + "#" * 40) for line in bins)  # the tallest bar, full width

    five = _cref(
        "--model", str(qwen_policy_dir), "--input", str(tmp_path / "traces.jsonl"), "--bins", "5"
    )
    assert five.returncode == 0, five.stderr
    assert len([line for line in five.stdout.splitlines() if line.startswith("[")]) == 5


def test_laser_cref_needs_z_c_for_a_family_without_a_default(
    tmp_path, mistral_policy_dir, traces
) -> None:
    path = str(_traces_file(tmp_path, traces))
    refused = _cref("--model", str(mistral_policy_dir), "--input", path)
    assert refused.returncode == 2
    assert "no default z_c for model type 'mistral'" in refused.stderr
    # no c_ref is needed to estimate one
    done = _cref("--model", str(mistral_policy_dir), "--input", path, "--z-c", "<|vision_start|>")
    assert done.returncode == 0, done.stderr
    assert "mean" in done.stdout and "reference's c_ref" not in done.stdout


def test_text_histogram_counts_every_value_once() -> None:
    from scoring.cli import text_histogram

    lines = text_histogram([-30.0, -25.0, -24.9, -20.0], bins=2, width=10)
    assert lines == ["[-30, -25)  1  ###", "[-25, -20]  3  ##########"]
    assert text_histogram([-3.0, -3.0], bins=3) == [
        "[-3, -2)  2  " + "#" * 40,
        "[-2, -1)  0",
        "[-1, 0]  0",
    ]
