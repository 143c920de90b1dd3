from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from scoring.adapters.llm_critic import LLMCritic, OpenAIBackend, critique_prompt, parse_index, vote
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
def test_it_parses_the_last_boxed_index(completion: str, index: int | None) -> None:
    assert parse_index(completion) == index


def test_it_takes_a_majority_vote_over_usable_answers() -> None:
    assert vote([1, None, 0, 1, 7], n_steps=2) == 1
    assert vote([None, 9], n_steps=2) is None


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
    assert result.details == {"sample_indices": [0, -1, 0, None], "first_error": 0}
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["model"] == "critic-model" and request["n"] == 4 and request["temperature"] > 0
    assert request["messages"] == [{"role": "user", "content": critique_prompt(TRACE)}]


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
    completions = critic.backend.generate(
        critique_prompt(TRACE), n=1, temperature=0.0, max_tokens=8
    )
    again = critic.backend.generate(critique_prompt(TRACE), n=1, temperature=0.0, max_tokens=8)
    assert completions == again  # greedy is deterministic
    result = critic.score_trace(TRACE)
    assert len(result.scores) == 2 and len(result.details["sample_indices"]) == 1
