from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from scoring.adapters.llm_critic import (
    LLMCritic,
    OpenAIBackend,
    as_index,
    critique_prompt,
    extract_answer,
    processbench_sampling,
    scores_for,
    vote,
)
from scoring.engine import score_traces
from scoring.types import Trace

TRACE = Trace("What is 2 + 3?", ("2 + 3 = 6.", "So \\boxed{6}."), id="c-0")


def test_it_builds_the_processbench_critique_prompt() -> None:
    prompt = critique_prompt(TRACE)
    assert prompt.startswith(
        "The following is a math problem and a solution (split into paragraphs, enclosed with "
        "tags and indexed from 0):\n\n[Math Problem]\n\nWhat is 2 + 3?\n\n[Solution]\n\n"
        "<paragraph_0>\n2 + 3 = 6.\n</paragraph_0>\n\n<paragraph_1>\nSo \\boxed{6}.\n</paragraph_1>\n\n"
    )
    assert prompt.endswith("Please put your final answer (i.e., the index) in \\boxed{}.")


@pytest.mark.parametrize(
    ("completion", "index"),
    [
        ("paragraph 0 is wrong: \\boxed{0}", 0),
        ("\\boxed{1} no wait \\boxed{-1}", -1),
        ("\\boxed{two}", None),
        ("", None),
    ],
)
def test_it_reads_the_last_boxed_index(completion: str, index: int | None) -> None:
    assert as_index(extract_answer(completion)) == index


def test_it_takes_a_majority_vote_over_every_boxed_string() -> None:
    assert vote(["1", None, "0", "1", "7"]) == "1"
    assert vote(["0", "0", "1"]) == "0"
    # ProcessBench's run_eval: only samples without a \boxed{} abstain; an out-of-range or
    # non-integer answer votes like any other, and if it wins there is no usable answer
    assert vote([None, "9"]) == "9"
    assert vote(["7", "7", "0", None, None]) == "7"
    assert vote(["two", "two", "1"]) == "two"
    assert vote([None, None]) is None
    assert all(math.isnan(s) for s in scores_for(7, n_steps=2) + scores_for(None, 2))
    assert all(math.isnan(s) for s in scores_for(-2, n_steps=2))
    assert scores_for(1, n_steps=2) == (1.0, 0.0) and scores_for(-1, 2) == (1.0, 1.0)


class _Server(HTTPServer):
    replies: list[str]
    requests: list[dict]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, **body})
        n = body["n"]
        payload = {"choices": [{"message": {"content": c}} for c in self.server.replies[:n]]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def test_it_asks_an_openai_compatible_server_and_votes(server) -> None:
    server.replies = ["\\boxed{0}", "\\boxed{-1}", "I think \\boxed{0}", "gibberish"]
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    critic = LLMCritic.from_pretrained("critic-model", base_url=url, n=4)
    result = critic.score_trace(TRACE)
    assert result.scores == (0.0, 0.0)
    assert result.details == {
        "sample_answers": ["0", "-1", "0", None],
        "vote": "0",
        "first_error": 0,
    }
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["model"] == "critic-model" and request["n"] == 4
    assert request["messages"] == [{"role": "user", "content": critique_prompt(TRACE)}]
    # every sampling parameter is sent: ProcessBench's voting run, vLLM's defaults for the
    # rest, so that nothing comes from the served model's generation_config.json
    sent = {
        key: value for key, value in request.items() if key not in ("path", "model", "messages")
    }
    assert sent == {
        "n": 4,
        "temperature": 1.0,
        "top_p": 0.9,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": 8192,
        "seed": 42,
    }


def test_it_sends_the_qwen_math_and_qwq_settings_by_model_name(server) -> None:
    server.replies = ["\\boxed{1}"] * 8
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    LLMCritic.from_pretrained("Qwen2.5-Math-72B-Instruct", base_url=url, n=8).score_trace(TRACE)
    LLMCritic.from_pretrained("QwQ-32B-Preview", base_url=url).score_trace(TRACE)
    math_request, qwq_request = server.requests
    assert (math_request["temperature"], math_request["top_p"], math_request["top_k"]) == (
        0.7,
        0.8,
        20,
    )
    assert (math_request["seed"], math_request["repetition_penalty"]) == (42, 1.0)
    assert (qwq_request["temperature"], qwq_request["max_tokens"], qwq_request["seed"]) == (
        0.0,
        32768,
        42,
    )


def test_it_decodes_greedily_up_to_8192_tokens_by_default(server) -> None:
    server.replies = ["\\boxed{1}"]
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    result = LLMCritic.from_pretrained("critic-model", base_url=url).score_trace(TRACE)
    assert result.scores == (1.0, 0.0)
    [request] = server.requests
    assert (request["n"], request["temperature"], request["max_tokens"]) == (1, 0.0, 8192)
    assert (request["seed"], request["repetition_penalty"], request["top_k"]) == (42, 1.0, -1)


def test_the_critic_follows_processbench_only() -> None:
    assert LLMCritic(backend=None, model_name="m").protocol == "processbench"
    with pytest.raises(ValueError, match="unknown protocol 'card'"):
        LLMCritic(backend=None, model_name="m", protocol="card")


def test_an_out_of_range_majority_is_no_usable_answer(server) -> None:
    # dropping the 7s before counting would elect 0 and score (0.0, 0.0)
    server.replies = ["\\boxed{7}", "\\boxed{7}", "\\boxed{0}", "no box"]
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    critic = LLMCritic.from_pretrained("critic-model", base_url=url, n=4)
    result = critic.score_trace(TRACE)
    assert all(math.isnan(s) for s in result.scores) and len(result.scores) == 2
    assert result.details == {
        "sample_answers": ["7", "7", "0", None],
        "vote": "7",
        "first_error": 7,
    }


def test_sampling_settings_can_be_overridden_but_not_to_n_greedy_samples(server) -> None:
    server.replies = ["\\boxed{1}"] * 8
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    critic = LLMCritic.from_pretrained(
        "m", base_url=url, n=8, temperature=0.7, top_p=0.8, top_k=20, max_tokens=32768, seed=7
    )
    critic.score_trace(TRACE)
    [request] = server.requests
    assert (request["temperature"], request["top_p"], request["top_k"]) == (0.7, 0.8, 20)
    assert (request["max_tokens"], request["seed"]) == (32768, 7)
    with pytest.raises(ValueError, match="temperature"):
        LLMCritic.from_pretrained("m", base_url=url, n=8, temperature=0.0)


def test_a_trace_without_steps_is_not_sent_to_the_critic(server) -> None:
    server.replies = ["\\boxed{0}"]
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    critic = LLMCritic.from_pretrained("critic-model", base_url=url)
    results = list(score_traces(critic, [Trace("q", (), id="empty"), TRACE]))
    assert [r.scores for r in results] == [(), (0.0, 0.0)]
    assert len(server.requests) == 1
    assert critic.score_trace(Trace("q", ())).scores == ()
    assert len(server.requests) == 1


def test_no_usable_answer_gives_nan_scores(server) -> None:
    server.replies = ["no idea"]
    critic = LLMCritic(OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m"))
    result = critic.score_trace(TRACE)
    assert all(math.isnan(s) for s in result.scores)


def test_it_generates_with_transformers_on_the_chat_template(qwen_lm_dirs) -> None:
    from scoring.adapters import load_adapter

    critic = load_adapter("llm-critic", str(qwen_lm_dirs[0]), device="cpu", max_tokens=8)
    ids = critic.backend.chat_ids(critique_prompt(TRACE))
    text = critic.backend.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    greedy = replace(processbench_sampling("m"), max_tokens=8)
    completions = critic.backend.generate(critique_prompt(TRACE), greedy)
    again = critic.backend.generate(critique_prompt(TRACE), greedy)
    assert completions == again  # greedy is deterministic
    sampled = critic.backend.generate(
        critique_prompt(TRACE), replace(processbench_sampling("m", n=2), max_tokens=4)
    )
    assert len(sampled) == 2
    result = critic.score_trace(TRACE)
    assert len(result.scores) == 2 and len(result.details["sample_answers"]) == 1
