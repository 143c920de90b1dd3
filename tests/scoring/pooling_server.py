"""A scripted vLLM pooling server for the ``backend=vllm`` tests, run as its own process:
``python -m tests.scoring.pooling_server --model DIR --arch prm|lm --pooler-config JSON``;
it prints its port.

``POST /pooling`` does what vLLM v0.15.0 does for ``task: token_classify`` with STEP
pooling, on a tiny checkpoint in the real layout: one forward pass per input (token ids),
the per-token outputs (``prm``: the 2-logit head of ``Qwen2ForProcessRewardModel``; ``lm``:
the LM logits), the ``returned_token_ids`` columns, the rows whose token is
``step_tag_id`` (all rows without one), then the head's softmax; answered as vLLM's
``PoolingResponse`` (``data[i] = {"index", "object": "pooling", "data": rows}``).

``POST /script`` scripts faults: ``{"fail": N}`` answers 500 to the next N pooling
requests; ``{"drop_row": true}`` sends one row too few per input; ``{"slow": N,
"delay": S}`` answers the next N pooling requests S seconds late. ``GET /stats`` gives the
pooling requests answered and the inputs each held.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, model: Any, arch: str, pooler_config: dict) -> None:
        super().__init__(address, Handler)
        self.model = model
        self.arch = arch
        self.step_tag_id = pooler_config.get("step_tag_id")
        self.returned_token_ids = pooler_config.get("returned_token_ids")
        self.lock = threading.Lock()
        self.fail = 0
        self.drop_row = False
        self.slow = 0
        self.delay = 0.0
        self.batches: list[int] = []

    def handle_error(self, request, client_address) -> None:
        # A client that gave up on a late answer (the timeout test) is expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def pool(self, ids: list[int]) -> list[list[float]]:
        tokens = torch.tensor([ids])
        with torch.inference_mode():
            out = self.model(input_ids=tokens)
            data = (out[0] if self.arch == "prm" else out.logits)[0].float()  # (T, labels|V)
        if self.returned_token_ids:
            data = data[:, self.returned_token_ids]
        if self.step_tag_id is not None:
            data = data[tokens[0] == self.step_tag_id]
        return data.softmax(dim=-1).tolist()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path != "/stats":
            return self._error(404, f"no route {self.path}")
        with self.server.lock:
            self._send(200, {"requests": len(self.server.batches), "batches": self.server.batches})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        s = self.server
        if self.path == "/script":
            with s.lock:
                s.fail = body.get("fail", 0)
                s.drop_row = body.get("drop_row", False)
                s.slow = body.get("slow", 0)
                s.delay = body.get("delay", 0.0)
                s.batches.clear()
            return self._send(200, {})
        if self.path != "/pooling":
            return self._error(404, f"no route {self.path}")
        with s.lock:
            if s.fail:
                s.fail -= 1
                return self._error(500, "scripted failure")
            delay = s.delay if s.slow else 0.0
            s.slow = max(s.slow - 1, 0)
        time.sleep(delay)
        if body.get("task") != "token_classify":
            return self._error(400, f"unsupported task {body.get('task')!r}")
        inputs = body["input"]
        if not all(isinstance(ids, list) and ids for ids in inputs):
            return self._error(400, "this server takes token ids: a list of lists of ints")
        data = []
        for index, ids in enumerate(inputs):
            rows = s.pool(ids)
            data.append(
                {"index": index, "object": "pooling", "data": rows[:-1] if s.drop_row else rows}
            )
        with s.lock:
            s.batches.append(len(inputs))
        n_tokens = sum(len(ids) for ids in inputs)
        usage = {"prompt_tokens": n_tokens, "total_tokens": n_tokens, "completion_tokens": 0}
        self._send(
            200,
            {
                "id": f"pool-{time.monotonic_ns()}",
                "object": "list",
                "created": int(time.time()),
                "model": "tiny",
                "data": data,
                "usage": usage,
            },
        )

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "Error", "code": status}})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def load_model(model: str, arch: str) -> Any:
    if arch == "prm":
        from scoring.adapters.qwen_prm import Qwen2ForProcessRewardModel

        return Qwen2ForProcessRewardModel.from_pretrained(model, dtype=torch.float32).eval()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()


def spawn(model: str | Path, arch: str, pooler_config: dict) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process; (the process, its base URL)."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.scoring.pooling_server",
            "--model",
            str(model),
            "--arch",
            arch,
            "--pooler-config",
            json.dumps(pooler_config),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def script(base_url: str, **faults: Any) -> None:
    request = urllib.request.Request(base_url + "/script", data=json.dumps(faults).encode())
    urllib.request.urlopen(request, timeout=10).close()


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/stats", timeout=10) as response:
        return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--arch", choices=["prm", "lm"], required=True)
    parser.add_argument("--pooler-config", type=json.loads, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.model, args.arch)
    server = Server(("127.0.0.1", args.port), model, args.arch, args.pooler_config)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
