"""Generative verifiers and sampled solutions (``scoring.verifiers``, ``scoring.sampling``)
against the scripted OpenAI-compatible server process, both endpoints; p(yes)/p(no) and
the prompt against the reference's lines re-implemented here independently
(sc-genrm-scaling ``generate_verifications.py:52-95, 105-129, 150-165``)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from scoring.completers import OpenAICompleter, Sampling
from scoring.sampling import sample_solutions
from scoring.verifiers import (
    GENRM_BASE_ZERO_SHOT,
    Candidate,
    CriticVerifier,
    GenRMBase,
    genrm_prompt,
    verdict_probabilities,
)
from tests.scoring import mc_server


@pytest.fixture(scope="module")
def server():
    process, url = mc_server.spawn()
    yield url
    process.terminate()
    process.wait(timeout=10)


def reference_extract_p_yes(logprobs, decode):
    """generate_verifications.py:105-129 and the try/except of 151-154, line by line."""
    try:

        def extract_p(final_verdict_position):
            p_yes, p_no = -1, -1
            logprobs_final_verdict = logprobs[final_verdict_position]
            for key, value in logprobs_final_verdict.items():
                if decode(key) == " Yes" or decode(key) == "Yes":
                    p_yes = np.exp(value)
                if decode(key) == " No" or decode(key) == "No":
                    p_no = np.exp(value)
            return p_yes, p_no

        p_yes, p_no = extract_p(0)
        if p_yes != -1 or p_no != -1:
            return p_yes, p_no
        final_verdict_position = -2
        p_yes, p_no = extract_p(final_verdict_position)
        if p_yes == -1 and p_no == -1:
            final_verdict_position = -3
            p_yes, p_no = extract_p(final_verdict_position)
        return p_yes, p_no
    except Exception:
        return -1, -1


def test_p_yes_is_read_where_the_reference_reads_it_on_random_logprobs() -> None:
    rng = random.Random(7)
    vocabulary = [" Yes", "Yes", " No", "No", "**", " the", "<|eot_id|>", " yes", "No."]
    for _ in range(3000):
        positions = [
            {
                rng.choice(vocabulary): math.log(rng.uniform(0.01, 1.0))
                for _ in range(rng.randint(1, 3))
            }
            for _ in range(rng.randint(0, 5))
        ]
        expected = reference_extract_p_yes(positions, decode=lambda token: token)
        found = verdict_probabilities(positions)
        as_reference = tuple(-1 if p is None else p for p in found)
        assert as_reference == pytest.approx(tuple(float(p) for p in expected)), positions


def reference_prepare_prompt(template, question, solution):
    """generate_verifications.py:73-90 (remove_think_tag_from_solution on)."""
    solution = solution.split("</think>\n\n")[-1]
    if "Question: {}" in template:
        prompt = template.replace("Question: {}", f"Question: {question}")
        prompt = prompt.replace("Solution: {}", f"Solution: {solution}")
    else:
        prompt = template.format(question, solution)
    return prompt


@pytest.mark.parametrize(
    ("question", "solution"),
    [
        ("What is 1 + 1?", "<think>hmm</think>\n\nIt is \\boxed{2}."),
        ("Odd {braces} and Solution: {} inside", "a </think>\n\n b </think>\n\n c"),
    ],
)
def test_the_prompt_is_filled_as_the_reference_fills_it(question, solution) -> None:
    assert genrm_prompt(question, solution) == reference_prepare_prompt(
        GENRM_BASE_ZERO_SHOT, question, solution
    )
    other = "Grade: {}\n{}"
    assert genrm_prompt(question, solution, other) == reference_prepare_prompt(
        other, question, solution
    )


@pytest.mark.parametrize("chat", [False, True])
def test_genrm_reads_verdicts_and_probabilities_from_both_endpoints(server, chat) -> None:
    completer = OpenAICompleter(server, "m", Sampling(0.7, 0.95, 64), chat=chat)
    [right, wrong] = sample_solutions(completer, [("VARIED What is 2 + 3?", "5")], 3)[0][1:3]
    assert (right.answer, right.correct, wrong.answer, wrong.correct) == ("5", True, "6", False)
    outputs = GenRMBase(completer).verify_all(
        [Candidate("What is 2 + 3?", s.text, s.steps) for s in (right, wrong)], 10
    )
    for solution, verifications in zip((right, wrong), outputs, strict=True):
        assert len(verifications) == 10
        for k, out in enumerate(verifications):
            says_yes = (not solution.correct) if k % 4 == 3 else solution.correct
            assert out.verdict is says_yes
            # logprobs=1: the sampled verdict token only; "**Yes**" (k = 4, 9) at -3
            assert (out.p_yes, out.p_no) == (
                (pytest.approx(0.9), None) if says_yes else (None, pytest.approx(0.8))
            )
            assert out.tokens == len(mc_server.tokens_of(out.text))
    more = GenRMBase(completer, top_logprobs=2).verify_all(
        [Candidate("What is 2 + 3?", right.text, right.steps)], 1
    )[0][0]
    assert (more.p_yes, more.p_no) == (pytest.approx(0.9), pytest.approx(0.1))


def test_the_critic_finds_an_error_in_a_wrong_solution_only(server) -> None:
    completer = OpenAICompleter(server, "m", Sampling(1.0, 0.9, 64), chat=True)
    solutions = sample_solutions(completer, [("VARIED What is 4 + 4?", "8")], 3)[0]
    outputs = CriticVerifier(completer).verify_all(
        [Candidate("What is 4 + 4?", s.text, s.steps) for s in solutions], 2
    )
    assert [[o.verdict for o in out] for out in outputs] == [
        [True, True],
        [True, True],
        [False, False],
    ]
    assert all(o.p_yes is None and o.tokens > 0 for out in outputs for o in out)


def test_solutions_carry_their_own_token_counts(server) -> None:
    completer = OpenAICompleter(server, "m", Sampling(0.7, 1.0, 64))
    [solutions] = sample_solutions(completer, [("VARIED What is 10 + 5?", "15")], 4)
    assert [s.answer for s in solutions] == ["15", "15", "16", "15"]
    assert [s.tokens for s in solutions] == [len(mc_server.tokens_of(s.text)) for s in solutions]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from scoring.tiny import build_causal_lm, qwen_tokenizer

    return build_causal_lm(tmp_path_factory.mktemp("tiny-lm"), qwen_tokenizer(), "qwen2")


def test_a_local_model_samples_with_token_counts_and_its_own_log_probabilities(tiny_lm) -> None:
    """``hf:PATH``: each completion's tokens and, per position, log-probabilities equal to
    a forward pass over the prompt and the completion so far (computed here)."""
    import torch

    from scoring.completers import TransformersCompleter
    from scoring.montecarlo import Prompt

    completer = TransformersCompleter(
        str(tiny_lm), Sampling(temperature=1.0, top_p=1.0, max_tokens=5, seed=0), device="cpu"
    )
    prompt = Prompt("What is 3 + 4?", "What is 3 + 4?", "")
    [completions] = completer.sample_all([prompt], 3, top_logprobs=2)
    assert len(completions) == 3
    tokenizer, model = completer.tokenizer, completer.model
    prompt_ids = tokenizer(prompt.text)["input_ids"]
    for completion in completions:
        assert 1 <= completion.tokens <= 5 and len(completion.top_logprobs) == completion.tokens
        ids = list(completion.token_ids)
        assert tokenizer.decode(ids, skip_special_tokens=True) == completion.text
        with torch.inference_mode():
            logits = model(torch.tensor([prompt_ids + ids])).logits[0].float()
        expected = torch.log_softmax(logits[len(prompt_ids) - 1 :], dim=-1)  # (len(ids)+1, V)
        for i, token in enumerate(ids):
            position = completion.top_logprobs[i]
            assert len(position) in (2, 3)
            top = torch.topk(expected[i], 2)
            # Keys are token texts (as a server's): tokens that decode alike (byte pieces)
            # are listed once, under the likelier one's value.
            for t in [*top.indices.tolist(), token]:
                key = tokenizer.decode([t])
                first = next(
                    u for u in [*top.indices.tolist(), token] if tokenizer.decode([u]) == key
                )
                assert position[key] == pytest.approx(float(expected[i, first]), abs=1e-4)


def test_an_empty_solution_is_one_step_with_no_answer() -> None:
    from scoring.sampling import grade_texts

    empty, right, wrong = grade_texts(
        ["", "So 2 + 2 = 4.\n\nThe answer is \\boxed{4}.", "\\boxed{5}"], [0, 9, 2], "#### 4"
    )
    assert (empty.steps, empty.answer, empty.correct, empty.tokens) == (("",), None, False, 0)
    assert right.steps == ("So 2 + 2 = 4.", "The answer is \\boxed{4}.") and right.correct
    assert (wrong.answer, wrong.correct) == ("5", False)
