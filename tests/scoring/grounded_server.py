"""A scripted OpenAI-compatible server for the grounded search, run as its own process:
``python -m tests.scoring.grounded_server``; it prints its port.

Problems read "Compute (A + B) * C."; the answers depend only on the prompt, so a search
against it is repeatable. It answers the four requests of the search by their prompts:

* root extraction: the conditions ``A``, ``B``, ``C`` and the objective;
* next step, the ``i``-th of ``n`` choices by the depth of the previous steps: at depth 0
  the sum (choice 2 is the **planted wrong step**, objective marked ``WRONG STEP``, whose sum
  is one too many); at depth 1 the product written as arithmetic and ``<end>`` (0), the
  product as a boxed chain (1), or the sum restated (2, terminal by repetition); deeper, the
  product with ``<end>``. Later steps build on the sum the path holds, planted or not;
* tool query: a program printing ``A + B`` (a sum objective) or ``(A + B) * C``; for a
  target that says ``Recheck``, the first program divides by zero;
* verification: ``True`` where the tool decided ``correct``, ``False`` where ``wrong``; where
  the tool had no result, ``False`` if the step is the planted one, else ``True``. Its first
  reply to a prompt whose step restates the sum holds no verdict, so the judge is asked again.

``GET /stats`` gives the requests served by kind; ``--delay S`` slows every answer (a test
that kills a run mid-search needs it to still be running).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PLANTED = "WRONG STEP"
_OBJECTIVE = re.compile(r"\((\d+) \+ (\d+)\) \* (\d+)")


def problem(a: int, b: int, c: int) -> str:
    return f"Compute ({a} + {b}) * {c}."


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, delay: float = 0.0) -> None:
        super().__init__(address, Handler)
        self.delay = delay
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.seen: set[str] = set()


def _input(prompt: str) -> dict:
    body = prompt[prompt.index("Input:") + len("Input:") :]
    return json.loads(body)


def _boxed(text: str) -> str:
    return text[text.rindex("\\boxed{") + 7 :].split("}")[0]


def step(depth: int, index: int, a: int, b: int, c: int, total: int | None) -> dict:
    if depth == 0:
        s = a + b
        return [
            {"step objective": "Add A and B", "action": f"{a} + {b} = {s}, so \\boxed{{s = {s}}}"},
            {
                "step objective": "Find the sum of the first two numbers",
                "action": f"The sum is {a} + {b} = {s}. \\boxed{{s = {s}}}",
            },
            {
                "step objective": f"Add A and B ({PLANTED})",
                "action": f"{a} + {b} = {s + 1}, so \\boxed{{s = {s + 1}}}",
            },
        ][index % 3]
    p = total * c
    if depth == 1:
        return [
            {
                "step objective": "Multiply the sum by C",
                "action": f"{total} * {c} = {p}, so \\boxed{{p = {p}}} <end>",
            },
            {
                "step objective": "Scale the sum by C",
                "action": f"\\boxed{{p = \\sqrt{{{total * total}}} \\cdot {c} = {p}}}",
            },
            {"step objective": "Restate the sum", "action": f"So far \\boxed{{s = {total}}}"},
        ][index % 3]
    return {
        "step objective": ["State the product", "Report the answer", "Give the result"][index % 3],
        "action": f"The product is \\boxed{{p = {p}}} <end>",
    }


def reply(prompt: str, n: int, server: Server) -> tuple[str, list[str]]:
    if "Extract the conditions and the global objective." in prompt:
        a, b, c = map(int, re.search(r"Compute \((\d+) \+ (\d+)\) \* (\d+)", prompt).groups())
        answer = {
            "conditions": f"condition 1: A = {a}, condition 2: B = {b}, condition 3: C = {c}",
            "global_objective": f"Find ({a} + {b}) * {c}",
        }
        return "extract", [json.dumps(answer)] * n
    if "<tool_return>:" in prompt:
        first = prompt not in server.seen
        server.seen.add(prompt)
        answer = prompt.split("<llm_answer>:")[1]
        if "So far" in answer and first:
            return "verify", ["I cannot tell yet."] * n
        if "decision: correct" in prompt:
            result = "True"
        elif "decision: wrong" in prompt:
            result = "False"
        else:
            result = "False" if PLANTED in prompt else "True"
        text = json.dumps({"reason": f"The tool's result settles it: {result}.", "result": result})
        return "verify", [f"<think>\nchecking\n</think>\n```json\n{text}\n```"] * n
    data = _input(prompt)
    a, b, c = map(int, _OBJECTIVE.search(data["global_objective"]).groups())
    if (
        "current_target" in data
        and "Recheck" in data["current_target"]
        and prompt not in server.seen
    ):
        server.seen.add(prompt)  # a program that fails, the first time it is asked
        return "query", [json.dumps({"query": "print(1 / 0)"})] * n
    if "current_target" in data:
        code = (
            f"print({a} + {b})"
            if "sum" in data["current_target"].lower() or "Add" in data["current_target"]
            else f"print(({a} + {b}) * {c})"
        )
        return "query", [json.dumps({"query": code})] * n
    previous = data["previous_steps"]
    total = int(_boxed(previous[0]["action"]).split("=")[-1]) if previous else None
    texts = [json.dumps(step(len(previous), i, a, b, c, total)) for i in range(n)]
    return "step", texts


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        with self.server.lock:
            self._send(200, dict(self.server.counts))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/completions":
            prompt = body["prompt"]
        elif self.path == "/v1/chat/completions":
            prompt = "\n".join(m["content"] for m in body["messages"])
        else:
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        n = body.get("n", 1)
        time.sleep(self.server.delay)
        with self.server.lock:
            kind, texts = reply(prompt, n, self.server)
            self.server.counts[kind] = self.server.counts.get(kind, 0) + 1
        if self.path == "/v1/completions":
            choices = [{"index": i, "text": t} for i, t in enumerate(texts)]
        else:
            choices = [{"index": i, "message": {"content": t}} for i, t in enumerate(texts)]
        self._send(200, {"choices": choices, "usage": {"completion_tokens": 10 * n}})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def spawn(delay: float = 0.0) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process; (the process, its ``/v1`` base URL)."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.scoring.grounded_server", "--delay", str(delay)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/v1"


def stats(base_url: str) -> dict[str, int]:
    """Requests served so far, by kind (extract, step, query, verify)."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=10) as response:
        return json.load(response)


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
