"""``rlhflow`` against both published procedures, re-implemented here line by line on a tiny
Llama-3.1-layout checkpoint: RLHFlow's ``math-rm/prm_evaluate.py`` (``protocol=card``) and
ProcessBench's ``code/run_eval_prm_rlhflow.py`` (``protocol=processbench``), whose vLLM
server's greedy one-token completion is reproduced with the chat template, an argmax and a
decode without special tokens."""

from __future__ import annotations

import pytest
import torch

from scoring.engine import score_traces
from scoring.metrics import first_error
from scoring.tiny import HARD_TRACES

TOL = 1e-4


def _plus_sometimes_wins(directory, traces) -> None:
    """Rescale the ``+`` row of the LM head so the greedy next token is ``+`` at about half
    of the assistant turns: a random model never answers ``+``, which would let every
    ProcessBench judgment be "-" whatever was read where."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    plus = tokenizer.encode("+")[-1]
    hidden, best_other = [], []
    for trace in traces:
        messages = []
        for k, step in enumerate(trace.steps):
            messages.append(
                {"role": "user", "content": (trace.problem + "\n\n" + step) if k == 0 else step}
            )
            ids = tokenizer(
                tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
                return_tensors="pt",
            ).input_ids
            with torch.no_grad():
                out = model(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-1][0, -1])
            logits = out.logits[0, -1].clone()
            logits[plus] = -torch.inf
            best_other.append(logits.max())
            messages.append({"role": "assistant", "content": "+"})
    direction = torch.stack(hidden).mean(0)
    along = torch.stack([h @ direction for h in hidden])
    scale = (torch.stack(best_other) / along).median()
    with torch.no_grad():
        model.lm_head.weight[plus] = direction * scale
    model.save_pretrained(directory)


@pytest.fixture(scope="module")
def rlhflow_dir(tmp_path_factory, traces):
    from scoring.tiny import build_causal_lm, llama3_tokenizer

    directory = build_causal_lm(tmp_path_factory.mktemp("rlhflow"), llama3_tokenizer(), "llama")
    _plus_sometimes_wins(directory, [*traces, *HARD_TRACES])
    return directory


@pytest.fixture(scope="module")
def reference(rlhflow_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rlhflow_dir)
    return tokenizer, AutoModelForCausalLM.from_pretrained(rlhflow_dir).eval()


def _prm_evaluate_step_scores(tokenizer, model, prompt: str, ans_list: list[str]) -> list[float]:
    """prm_evaluate.py's select_sample for one answer already split into steps."""
    plus_tag_id = tokenizer.encode("+")[-1]
    minus_tag_id = tokenizer.encode("-")[-1]
    candidate_tokens = [plus_tag_id, minus_tag_id]
    ans_list = [j.strip() for j in ans_list]
    single_step_score = []
    conversation = []
    for k in range(len(ans_list)):
        text = prompt + " " + ans_list[0] if k == 0 else ans_list[k]
        conversation.append({"content": text, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        input_ids = tokenizer.apply_chat_template(
            conversation, return_tensors="pt", return_dict=False
        )
        with torch.no_grad():
            logits = model(input_ids).logits[:, -3, candidate_tokens]
            scores = logits.softmax(dim=-1)[:, 0]
        single_step_score.append(scores[0].to("cpu", dtype=torch.float32).item())
    return single_step_score


def _greedy_completion(tokenizer, model, messages) -> str:
    """What the script's vLLM server returns for temperature 0, max_tokens 1."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        token = model(ids).logits[0, -1].argmax().item()
    return tokenizer.decode([token], skip_special_tokens=True)


def _single_process(tokenizer, model, d, stop: bool = True) -> int | list[bool]:
    """run_eval_prm_rlhflow.py's single_process; ``stop=False`` keeps judging every step
    (with "+" turns before it) instead of returning at the first "-"."""
    steps = d["steps"]
    messages = []
    judgments = []
    for sdx, step in enumerate(steps):
        if sdx == 0:
            messages.append({"role": "user", "content": d["problem"] + "\n\n" + step})
        else:
            messages.append({"role": "user", "content": step})
        content = _greedy_completion(tokenizer, model, messages)
        judgment = content.strip().lower().startswith("+")
        judgments.append(judgment)
        if not judgment and stop:
            return sdx
        messages.append({"role": "assistant", "content": "+"})
    return -1 if stop else judgments


def test_rlhflow_card_reproduces_prm_evaluate(rlhflow_dir, reference, traces) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("rlhflow", str(rlhflow_dir), device="cpu", protocol="card")
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        expected = _prm_evaluate_step_scores(*reference, trace.problem, list(trace.steps))
        assert len(result.scores) == len(expected) == len(trace.steps)
        assert max(abs(a - b) for a, b in zip(result.scores, expected, strict=True)) <= TOL
    spread = [s for r in results for s in r.scores]
    assert max(spread) - min(spread) > 1e-2


def test_rlhflow_processbench_reproduces_run_eval_prm_rlhflow(
    rlhflow_dir, reference, traces
) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("rlhflow", str(rlhflow_dir), device="cpu", protocol="processbench")
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    all_judgments = []
    for trace, result in zip(batch, results, strict=True):
        d = {"problem": trace.problem, "steps": list(trace.steps)}
        judgments = _single_process(*reference, d, stop=False)
        assert list(result.scores) == [1.0 if j else 0.0 for j in judgments]
        assert first_error(result.scores, 0.5) == _single_process(*reference, d)
        all_judgments += judgments
    # both answers occur, so a read-out at the wrong place would show
    assert 0.2 < sum(all_judgments) / len(all_judgments) < 0.8


def test_the_protocols_differ_on_a_first_step_with_leading_whitespace(rlhflow_dir) -> None:
    from scoring.adapters import load_adapter
    from scoring.types import Trace

    card = load_adapter("rlhflow", str(rlhflow_dir), device="cpu")
    processbench = load_adapter("rlhflow", str(rlhflow_dir), device="cpu", protocol="processbench")
    trace = Trace("What is 5 * 12?", ("  5 * 12 = 60 eggs. ", "\\boxed{60}"))
    assert card.conversation(trace)[0]["content"] == "What is 5 * 12? 5 * 12 = 60 eggs."
    assert (
        processbench.conversation(trace)[0]["content"] == "What is 5 * 12?\n\n  5 * 12 = 60 eggs. "
    )
