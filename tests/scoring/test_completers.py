"""Completers against a real scripted server process on loopback, and a tiny local model."""

from __future__ import annotations

import pytest

from scoring.completers import (
    CompleterError,
    OpenAICompleter,
    Sampling,
    TransformersCompleter,
    load_completer,
)
from scoring.montecarlo import Prompt, PromptTemplate, estimate_binary, estimate_exhaustive
from scoring.types import Trace
from tests.scoring import mc_server

TEMPLATE = PromptTemplate()


def prompt(problem: str, *steps: str) -> Prompt:
    return Prompt(TEMPLATE.render(problem, steps), problem, TEMPLATE.prefix(steps))


@pytest.fixture(scope="module")
def server():
    process, url = mc_server.spawn(delay=0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_it_completes_many_prompts_in_flight_in_order(server) -> None:
    mc_server.reset(server)
    completer = OpenAICompleter(server, "m", Sampling(seed=1), max_in_flight=8)
    prompts = [prompt(f"What is {i} + 1?") for i in range(16)]
    results = completer.complete(prompts, 3)
    assert [r.texts[0].endswith(f"\\boxed{{{i + 1}}}.") for i, r in enumerate(results)] == [
        True
    ] * 16
    assert all(len(r.texts) == 3 and r.tokens == 3 * 8 for r in results)
    stats = mc_server.stats(server)
    assert stats["requests"] == 16 and stats["completions"] == 48
    assert stats["max_in_flight"] > 1, stats  # requests overlapped


def test_it_sends_every_sampling_parameter() -> None:
    completer = OpenAICompleter(
        "http://x/v1",
        "m",
        Sampling(temperature=0.9, top_p=0.95, max_tokens=64, seed=3, stop=("\n\n",)),
    )
    body = completer.body(prompt("What is 1 + 1?", "1 + 1 = 2."), 4)
    assert body == {
        "model": "m",
        "n": 4,
        "temperature": 0.9,
        "top_p": 0.95,
        "max_tokens": 64,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 3,
        "stop": ["\n\n"],
        "prompt": TEMPLATE.render("What is 1 + 1?", ["1 + 1 = 2."]),
    }
    chat = OpenAICompleter("http://x/v1", "m", chat=True).body(prompt("Q?", "a"), 2)
    assert chat["messages"] == [
        {"role": "user", "content": TEMPLATE.render("Q?", [])},
        {"role": "assistant", "content": "a\n\n"},
    ]
    assert chat["continue_final_message"] is True and chat["add_generation_prompt"] is False


def test_the_chat_endpoint_continues_the_prefix(server) -> None:
    completer = OpenAICompleter(server, "m", chat=True)
    [result] = completer.complete([prompt("What is 2 + 2?", "WRONG STEP")], 2)
    assert result.texts == ("Adding up gives 5. The answer is \\boxed{5}.",) * 2


def test_the_server_s_error_is_shown_and_not_retried(server) -> None:
    mc_server.reset(server)
    completer = OpenAICompleter(server, "broken", retries=3, backoff_s=0.01)
    with pytest.raises(CompleterError, match="answered 400: This model's maximum context length"):
        completer.complete([prompt("What is 1 + 1?")], 2)


def test_server_errors_are_retried_with_backoff(server) -> None:
    completer = OpenAICompleter(server, "flaky", retries=2, backoff_s=0.01)
    results = completer.complete([prompt("What is 3 + 1?"), prompt("What is 3 + 2?")], 1)
    assert [r.texts for r in results] == [
        ("Adding up gives 4. The answer is \\boxed{4}.",),
        ("Adding up gives 5. The answer is \\boxed{5}.",),
    ]
    no_retries = OpenAICompleter(server, "flaky", retries=0)
    with pytest.raises(CompleterError, match="503: server overloaded, retry.*after 1 attempts"):
        no_retries.complete([prompt("What is 3 + 3?")], 1)


def test_a_slow_server_times_out_and_a_dead_one_is_named(server) -> None:
    slow = OpenAICompleter(server, "m", timeout_s=0.01, retries=1, backoff_s=0.01)
    with pytest.raises(CompleterError, match="did not answer.*after 2 attempts"):
        slow.complete([prompt("What is 1 + 1?")], 1)
    dead = OpenAICompleter("http://127.0.0.1:9/v1", "m", retries=1, backoff_s=0.01)
    with pytest.raises(CompleterError, match="127.0.0.1:9/v1/completions did not answer"):
        dead.complete([prompt("What is 1 + 1?")], 1)


def test_monte_carlo_over_the_server_finds_the_planted_error(server) -> None:
    completer = load_completer(f"openai:{server}", model="m", temperature=1.0, max_in_flight=4)
    trace = Trace(
        "What is 20 + 22?",
        ("20 + 20 = 40.", "WRONG STEP: 40 + 2 = 43.", "So 43."),
        reference_answer="42",
        id="s",
    )
    full = estimate_exhaustive(trace, completer, 2)
    binary = estimate_binary(trace, completer, 2)
    assert full.mc == (1.0, 0.0, 0.0) and full.problem_value == 1.0
    assert full.first_error == binary.first_error == 1
    assert full.tokens == 4 * 2 * 8


def test_a_spec_names_the_completer() -> None:
    with pytest.raises(ValueError, match="openai:BASE_URL or hf:MODEL_PATH"):
        load_completer("vllm")
    with pytest.raises(ValueError, match="--model"):
        load_completer("openai:http://x/v1")
    completer = load_completer("openai:http://x/v1", model="m", seed=5, stop="\n", retries=1)
    assert completer.sampling == Sampling(seed=5, stop=("\n",)) and completer.retries == 1


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from scoring.tiny import build_causal_lm, qwen_tokenizer

    return build_causal_lm(tmp_path_factory.mktemp("tiny-lm"), qwen_tokenizer(), "qwen2")


def test_a_tiny_transformers_model_completes_prompts(tiny_lm) -> None:
    completer = TransformersCompleter(
        str(tiny_lm), Sampling(temperature=1.0, max_tokens=6, seed=0), device="cpu", batch_size=2
    )
    prompts = [prompt("What is 3 + 4?"), prompt("What is 5 * 12?", "5 * 12 = 60."), prompt("x?")]
    results = completer.complete(prompts, 3)
    assert [len(r.texts) for r in results] == [3, 3, 3]
    assert all(0 < r.tokens <= 3 * 6 for r in results)
    assert len({t for r in results for t in r.texts}) > 1  # sampled, not one constant string

    trace = Trace("What is 3 + 4?", ("3 + 4 = 7.", "\\boxed{7}"), reference_answer="7", id="h")
    result = estimate_exhaustive(trace, completer, 2)
    assert result.rollouts == 6 and result.tokens > 0
    # A random model writes no \boxed{}: the last prefix's own answer decides it.
    assert result.mc[-1] == 1.0 and result.first_error in (-1, 0)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")
def test_the_transformers_completer_samples_in_bf16_on_cuda(tiny_lm) -> None:
    import torch

    completer = TransformersCompleter(str(tiny_lm), Sampling(temperature=1.0, max_tokens=4))
    assert completer.model.dtype == torch.bfloat16 and completer.model.device.type == "cuda"
    results = completer.complete([prompt("What is 3 + 4?"), prompt("x?", "a")], 4)
    assert [len(r.texts) for r in results] == [4, 4] and all(r.tokens > 0 for r in results)
