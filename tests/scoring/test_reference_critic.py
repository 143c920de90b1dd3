"""``llm-critic`` against ProcessBench's ``code/run_eval.py``, re-implemented here line by
line: the answer extraction and ``int()`` on crafted completions, the string vote, the
``SamplingParams`` per model, and greedy decoding that is a plain argmax (no repetition
penalty or top_k from the checkpoint's generation config)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import pytest
import torch

from scoring.adapters.llm_critic import (
    LLMCritic,
    Sampling,
    TransformersBackend,
    as_index,
    critique_prompt,
    extract_answer,
    processbench_sampling,
    vote,
)
from scoring.types import Trace


def _run_eval_extract_answer(solution_text: str):
    boxed_pattern = r"\\boxed\{([^}]*)\}"
    matches = re.findall(boxed_pattern, solution_text)
    if matches:
        return matches[-1].strip()
    return None


def _run_eval_greedy_pred(generated_critique: str):
    pred = _run_eval_extract_answer(generated_critique)
    try:
        pred = int(pred)
    except (TypeError, ValueError):
        pred = None
    return pred


def _run_eval_voting_pred(generated_critique: list[str]):
    preds = [_run_eval_extract_answer(e) for e in generated_critique]
    preds = [e for e in preds if e is not None]
    if len(preds) == 0:
        pred = None
    else:
        pred = Counter(preds).most_common(1)[0][0]
        try:
            pred = int(pred)
        except (TypeError, ValueError):
            pred = None
    return pred


# (completion, what run_eval.py reads): the cases the adapter once read differently first
CRAFTED = [
    ("so the answer is \\boxed{\\text{2}}", None),
    ("\\fbox{2}", None),
    ("\\boxed {2}", None),
    ("\\boxed{+2}", 2),
    ("\\boxed{1} and then a bare \\boxed", 1),
    ("\\boxed{1} and an unclosed \\boxed{2", 1),
    ("\\boxed{01}", 1),
    ("\\boxed{ -1 }", -1),
    ("\\boxed{-1}", -1),
    ("\\boxed{\\frac{1}{2}}", None),
    ("\\boxed{}", None),
    ("\\boxed{1}\n\\boxed{2}", 2),
    ("\\boxed{\n3\n}", 3),
    ("\\boxed{1_0}", 10),
    ("\\boxed{2.0}", None),
    ("\\boxed{two}", None),
    ("\\boxed{2}.", 2),
    ("$\\boxed{3}$", 3),
    ("\\boxed{{3}}", None),
    ("\\boxed{3}}", 3),
    ("no box at all", None),
    ("", None),
    ("\\boxed{-0}", 0),
    ("\\boxed{ 4 } then \\boxed{x}", None),
]


@pytest.mark.parametrize(("completion", "index"), CRAFTED)
def test_it_extracts_the_index_as_run_eval_does(completion: str, index: int | None) -> None:
    assert _run_eval_greedy_pred(completion) == index  # the table is run_eval's own reading
    assert as_index(extract_answer(completion)) == index
    assert extract_answer(completion) == _run_eval_extract_answer(completion)


@pytest.mark.parametrize(
    "samples",
    [
        ["\\boxed{01}", "\\boxed{1}", "\\boxed{3}", "\\boxed{3}"],
        ["\\boxed{1}", "\\boxed{2}", "\\boxed{2}", "\\boxed{1}"],
        ["\\boxed{two}", "\\boxed{two}", "\\boxed{1}"],
        ["\\boxed{}", "\\boxed{}", "\\boxed{0}"],
        ["no box", "\\fbox{1}", "\\boxed{ 1}", "\\boxed{1 }"],
        ["\\boxed{7}", "\\boxed{7}", "\\boxed{0}", "no box"],
        ["none", "none either"],
        [c for c, _ in CRAFTED],
    ],
)
def test_it_votes_on_strings_as_run_eval_does(samples: list[str]) -> None:
    assert as_index(vote([extract_answer(s) for s in samples])) == _run_eval_voting_pred(samples)


def test_01_1_3_3_votes_for_3() -> None:
    samples = ["\\boxed{01}", "\\boxed{1}", "\\boxed{3}", "\\boxed{3}"]
    assert _run_eval_voting_pred(samples) == 3
    assert as_index(vote([extract_answer(s) for s in samples])) == 3


def _run_eval_sampling_params(model_path: str, use_voting: bool, voting_n: int = 8) -> dict:
    """run_eval.py's SamplingParams as a dict, vLLM's defaults filled in for the rest."""
    defaults = {"n": 1, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "min_p": 0.0}
    if not use_voting:
        params = {
            "temperature": 0.0,
            "max_tokens": 32768 if "QwQ" in model_path else 8192,
            "seed": 42,
        }
    elif "Qwen2.5-Math" in model_path:
        params = {
            "temperature": 0.7,
            "top_p": 0.8,
            "top_k": 20,
            "n": voting_n,
            "max_tokens": 32768 if "QwQ" in model_path else 8192,
            "seed": 42,
        }
    else:
        params = {
            "temperature": 1,
            "top_p": 0.9,
            "n": voting_n,
            "max_tokens": 32768 if "QwQ" in model_path else 8192,
            "seed": 42,
        }
    return {**defaults, **params}


@pytest.mark.parametrize(
    "model_path",
    ["Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-Math-72B-Instruct", "Qwen/QwQ-32B-Preview", "m"],
)
@pytest.mark.parametrize("n", [1, 8, 4])
def test_it_samples_as_run_eval_does(model_path: str, n: int) -> None:
    expected = _run_eval_sampling_params(model_path, use_voting=n > 1, voting_n=n)
    got = processbench_sampling(model_path, n)
    assert got == Sampling(**expected)
    critic = LLMCritic(backend=None, model_name=model_path, n=n)
    assert critic.sampling == got


@pytest.fixture(scope="module")
def instruct_dir(tmp_path_factory):
    """A tiny chat model whose generation config is Qwen2.5-Instruct's: sampling on,
    temperature 0.7, top_p 0.8, top_k 20, repetition penalty 1.05."""
    from transformers import GenerationConfig

    from scoring.tiny import build_causal_lm, qwen_tokenizer

    tokenizer = qwen_tokenizer()
    directory = build_causal_lm(tmp_path_factory.mktemp("instruct"), tokenizer, "qwen2", seed=3)
    GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=1.05,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(directory)
    return directory


def _argmax_decode(model, ids: list[int], eos: int, max_tokens: int) -> list[int]:
    """vLLM at temperature 0 with run_eval's other settings: the argmax, token by token."""
    out: list[int] = []
    for _ in range(max_tokens):
        with torch.no_grad():
            token = model(torch.tensor([ids + out])).logits[0, -1].argmax().item()
        out.append(token)
        if token == eos:
            break
    return out


def replace_max(sampling: Sampling, max_tokens: int) -> Sampling:
    return replace(sampling, max_tokens=max_tokens)


TRACES = [
    Trace("What is 2 + 3?", ("2 + 3 = 6.", "So \\boxed{6}."), id="c-0"),
    Trace("What is 5 * 12?", ("5 * 12 = 60 eggs.", "The total is \\boxed{60}."), id="c-1"),
    Trace("How many apples?", ("She has 3 apples.\nShe buys 4 more.", " 3 + 4 = 7"), id="c-2"),
]


def test_greedy_generation_is_a_plain_argmax_whatever_the_generation_config(instruct_dir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(instruct_dir)
    model = AutoModelForCausalLM.from_pretrained(instruct_dir).eval()
    backend = TransformersBackend(str(instruct_dir), device="cpu")
    sampling = processbench_sampling(str(instruct_dir), n=1)
    differs = 0
    for trace in TRACES:
        # run_eval.py's apply_chat_template: the text, tokenized without special tokens
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": critique_prompt(trace)}],
            add_generation_prompt=True,
            tokenize=False,
        )
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        assert backend.chat_ids(critique_prompt(trace)) == ids
        expected = _argmax_decode(model, ids, tokenizer.eos_token_id, max_tokens=24)
        [completion] = backend.generate(critique_prompt(trace), replace_max(sampling, 24))
        assert completion == tokenizer.decode(expected, skip_special_tokens=True)
        # what the checkpoint's own settings give instead (greedy, but its penalty applied)
        with torch.no_grad():
            own = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=24)
        differs += own[0, len(ids) :].tolist() != expected
    assert differs > 0  # the penalty matters on this model, so the test can tell


def test_voting_generation_uses_run_evals_seed_and_settings(instruct_dir) -> None:
    backend = TransformersBackend(str(instruct_dir), device="cpu")
    sampling = replace_max(processbench_sampling("Qwen2.5-Math-7B-Instruct", n=3), 12)
    first = backend.generate(critique_prompt(TRACES[0]), sampling)
    again = backend.generate(critique_prompt(TRACES[0]), sampling)
    assert len(first) == 3 and first == again  # seed 42 every time
