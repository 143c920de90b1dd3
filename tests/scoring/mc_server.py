"""A scripted OpenAI-compatible server for Monte-Carlo tests and the benchmark, run as its
own process: ``python -m tests.scoring.mc_server [--delay S]``; it prints its port.

Problems read "What is A + B?". Every completion ends in ``\\boxed{A+B}``, unless the
prompt contains the planted marker ``WRONG STEP``, in which case it ends in
``\\boxed{A+B+1}``: the first error of a trace is exactly its first planted step.

Solutions and verifications, with log-probabilities (for sampling and verification runs):
a problem holding ``VARIED`` gets a wrong answer (one too many) in every third completion
of a request (choices 2, 5, ...), so the pool of a problem has answers to vote between. A
GenRM prompt ("Teacher Verification:") is answered by a verification whose last line is
"Verification: Is the answer correct (Yes/No)? Yes" when the solution's last boxed answer
is the sum, "No" otherwise, except every fourth choice (3, 7, ...), which says the
opposite; every fifth (4, 9, ...) writes the verdict as ``**Yes**``. A ProcessBench
critique prompt ("[Math Problem]") gets ``\boxed{-1}`` for a right answer and
``\boxed{0}`` for a wrong one. With ``logprobs`` asked (the completions endpoint's number,
or chat's ``logprobs: true``), each choice carries its tokens (the text cut before each
space, then an end-of-sequence token ``<|eot_id|>`` that the text leaves out) with
log-probabilities: at the verdict token " Yes" and " No" are both listed, p(yes) 0.9
when the verification says yes and 0.2 when it says no. ``usage.completion_tokens``
counts those tokens.

Model names script faults: ``broken`` answers 400 with an OpenAI-style error;
``flaky`` answers 503 to the first request of each prompt, then normally. ``GET /stats``
gives the requests served and the most that were in flight at once; ``POST /reset``
zeroes them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PLANTED = "WRONG STEP"
_PROBLEM = re.compile(r"What is (\d+) \+ (\d+)\?")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, delay: float) -> None:
        super().__init__(address, Handler)
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.completions = 0
        self.seen_flaky: set[str] = set()

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (a killed worker, a timeout test) is expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def completion_for(prompt: str, choice: int = 0) -> str:
    match = _PROBLEM.search(prompt)
    total = int(match[1]) + int(match[2]) if match else 0
    if GENRM_MARK in prompt or CRITIC_MARK in prompt:
        return _verification_for(prompt, total, choice)
    answer = total + 1 if PLANTED in prompt else total
    if VARIED in prompt and choice % 3 == 2:
        answer += 1
    return f"Adding up gives {answer}. The answer is \\boxed{{{answer}}}."


VARIED = "VARIED"
GENRM_MARK = "Teacher Verification:"
CRITIC_MARK = "[Math Problem]"
EOS = "<|eot_id|>"
_BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


def solution_is_right(prompt: str, total: int) -> bool:
    """Whether the solution inside a verification prompt ends in the sum."""
    answers = _BOXED.findall(prompt.split("Solution", 1)[-1])
    return bool(answers) and int(answers[-1]) == total


def verifier_says_yes(prompt: str, choice: int) -> bool:
    match = _PROBLEM.search(prompt)
    total = int(match[1]) + int(match[2]) if match else 0
    right = solution_is_right(prompt, total)
    return (not right) if choice % 4 == 3 else right


def _verification_for(prompt: str, total: int, choice: int) -> str:
    if CRITIC_MARK in prompt:
        return (
            "Paragraph 0 checked. \\boxed{-1}"
            if solution_is_right(prompt, total)
            else ("Paragraph 0 adds wrongly. \\boxed{0}")
        )
    word = "Yes" if verifier_says_yes(prompt, choice) else "No"
    verdict = f"**{word}**" if choice % 5 == 4 else word
    return f"The sum is checked.\nVerification: Is the answer correct (Yes/No)? {verdict}"


def tokens_of(text: str) -> list[str]:
    """The scripted tokenizer: the text cut before each space and around ``**``, then the
    end token."""
    return [*re.findall(r"\s*\*\*|\s*[^\s*]+", text), EOS]


def logprobs_for(text: str, yes: bool) -> list[dict[str, float]]:
    """``{token: log-probability}`` per position; the sampled token is the first key."""
    positions = []
    for token in tokens_of(text):
        if token.strip("* ") in ("Yes", "No"):
            p_yes = 0.9 if yes else 0.2
            sampled = token
            other = " No" if "Yes" in token else " Yes"
            here = {sampled: math.log(p_yes if "Yes" in token else 1 - p_yes)}
            here[other] = math.log(1 - p_yes if "Yes" in token else p_yes)
            positions.append(here)
        else:
            positions.append({token: -0.01})
    return positions


def choice_for(path: str, body: dict, prompt: str, i: int) -> tuple[dict, int]:
    """One choice of the answer (and its token count), with log-probabilities if asked."""
    text = completion_for(prompt, i)
    chat = path == "/v1/chat/completions"
    choice: dict = (
        {"index": i, "message": {"content": text}} if chat else {"index": i, "text": text}
    )
    positions = logprobs_for(text, GENRM_MARK in prompt and verifier_says_yes(prompt, i))
    asked = body.get("logprobs")
    if asked is not None and asked is not False:
        tops = body.get("top_logprobs", 0) if chat else asked
        if chat:
            choice["logprobs"] = {
                "content": [
                    {
                        "token": next(iter(p)),
                        "logprob": next(iter(p.values())),
                        "top_logprobs": [
                            {"token": t, "logprob": v} for t, v in list(p.items())[:tops]
                        ],
                    }
                    for p in positions
                ]
            }
        else:
            choice["logprobs"] = {
                "tokens": [next(iter(p)) for p in positions],
                "token_logprobs": [next(iter(p.values())) for p in positions],
                "top_logprobs": [dict(list(p.items())[:tops]) if tops else None for p in positions],
            }
    return choice, len(positions)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path != "/stats":
            return self._send(404, {"error": {"message": "not found"}})
        s = self.server
        with s.lock:
            stats = {
                "requests": s.requests,
                "completions": s.completions,
                "max_in_flight": s.max_in_flight,
            }
        self._send(200, stats)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        s = self.server
        if self.path == "/reset":
            with s.lock:
                s.requests = s.completions = s.max_in_flight = 0
                s.seen_flaky.clear()
            return self._send(200, {})
        if self.path == "/v1/completions":
            prompt = body["prompt"]
        elif self.path == "/v1/chat/completions":
            prompt = "\n".join(m["content"] for m in body["messages"])
        else:
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        with s.lock:
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
        try:
            time.sleep(s.delay)
            if body["model"] == "broken":
                return self._send(
                    400, {"error": {"message": "This model's maximum context length is 8"}}
                )
            if body["model"] == "flaky":
                with s.lock:
                    first = prompt not in s.seen_flaky
                    s.seen_flaky.add(prompt)
                if first:
                    return self._send(503, {"message": "server overloaded, retry"})
            n = body.get("n", 1)
            with s.lock:
                s.requests += 1
                s.completions += n
            if (
                "logprobs" in body
                or VARIED in prompt
                or GENRM_MARK in prompt
                or CRITIC_MARK in prompt
            ):
                made = [choice_for(self.path, body, prompt, i) for i in range(n)]
                choices = [choice for choice, _ in made]
                usage = {"completion_tokens": sum(count for _, count in made)}
                return self._send(200, {"choices": choices, "usage": usage})
            text = completion_for(prompt)
            if self.path == "/v1/completions":
                choices = [{"index": i, "text": text} for i in range(n)]
            else:
                choices = [{"index": i, "message": {"content": text}} for i in range(n)]
            usage = {"completion_tokens": n * len(text.split())}
            self._send(200, {"choices": choices, "usage": usage})
        finally:
            with s.lock:
                s.in_flight -= 1

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def planted_records(count: int, max_steps: int = 6) -> list[dict]:
    """``jsonl`` records "What is A + B?" whose first error is planted at a known step
    (``label``; -1 for every third trace, which has none)."""
    records = []
    for i in range(count):
        n_steps = 2 + i % (max_steps - 1)
        first_error = -1 if i % 3 == 0 else (i * 5) % n_steps
        steps = [
            f"{PLANTED}: step {s} goes astray."
            if first_error != -1 and s >= first_error
            else f"Step {s} is fine."
            for s in range(n_steps)
        ]
        a, b = 10 + i, 7 * i
        records.append(
            {
                "id": f"p-{i}",
                "problem": f"What is {a} + {b}?",
                "steps": steps,
                "answer": str(a + b),
                "label": first_error,
            }
        )
    return records


def spawn(delay: float = 0.0) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process; (the process, its ``/v1`` base URL)."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.scoring.mc_server", "--delay", str(delay)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/v1"


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=10) as response:
        return json.load(response)


def reset(base_url: str) -> None:
    request = urllib.request.Request(base_url.removesuffix("/v1") + "/reset", data=b"{}")
    urllib.request.urlopen(request, timeout=10).close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), args.delay)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
