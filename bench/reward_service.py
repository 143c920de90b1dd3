"""The reward service under 64 trainer processes that each send one rollout at a time.

A Qwen2.5-Math-PRM-shaped model (random weights, 2 layers, hidden 256, a BPE tokenizer
trained on the traces) scores ProcessBench-GSM8K traces three ways, in one run:

(a) a bare batched ``score_traces`` over all the traces in this process (the limit);
(b) ``python -m scoring serve`` (batching on), 64 concurrent clients each posting single
    rollouts to ``/v1/rewards`` until the traces are done;
(c) the same service with ``--no-batching`` (one model call per request), same load.

Throughput is rollouts per second; latency is each request's time from send to answer.
Goals: (b) >= 0.8 x (a), (b) >= 4 x (c).

    .venv/bin/python bench/reward_service.py [--traces 256] [--clients 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.adapters import load_adapter  # noqa: E402
from scoring.engine import score_traces  # noqa: E402
from scoring.formats import read_traces  # noqa: E402
from scoring.tiny import build_qwen_prm  # noqa: E402
from scoring.types import Trace  # noqa: E402
from tests.scoring.reward_servers import ServiceProcess, free_port, scoring_serve  # noqa: E402

DATA = ROOT.parent / "shared/data/processbench-gsm8k/gsm8k.json"


async def load(url: str, traces: list[Trace], clients: int) -> tuple[float, list[float], int]:
    """``clients`` workers each posting one rollout per request until all are scored: the
    wall time, every request's latency, and how many sends broke off and were sent again
    (as the trainers' clients do)."""
    import httpx

    todo = list(range(len(traces)))
    latencies: list[float] = []
    retries = 0

    async def worker(session: httpx.AsyncClient) -> None:
        nonlocal retries
        while todo:
            trace = traces[todo.pop()]
            body = {"items": [{"prompt": trace.problem, "steps": list(trace.steps)}]}
            sent = time.perf_counter()
            while True:
                try:
                    answer = await session.post(f"{url}/v1/rewards", json=body)
                    break
                except httpx.TransportError:
                    retries += 1
            latencies.append(time.perf_counter() - sent)
            answer.raise_for_status()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        return time.perf_counter() - started, latencies, retries


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=256)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="best of N, interleaved")
    parser.add_argument("--log-dir", help="keep the services' logs here (default: dropped)")
    args = parser.parse_args()

    every = read_traces(DATA)
    traces = [every[i % len(every)] for i in range(args.traces)]
    corpus = [t.problem + "\n" + "\n\n".join(t.steps) for t in every]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "prm"
        build_qwen_prm(
            model, hidden=args.hidden, layers=args.layers, corpus=corpus, vocab_size=4000
        )
        adapter = load_adapter("qwen-prm", str(model), device=args.device)
        services = {}
        for name, extra in (("batched", []), ("unbatched", ["--no-batching"])):
            port = free_port()
            argv = scoring_serve(model, port, "--batch-tokens", str(args.batch_tokens), *extra)
            argv[argv.index("--device") + 1] = args.device
            log = Path(args.log_dir or tmp) / f"reward-service-{name}.log"
            services[name] = ServiceProcess(argv, port, log=log).start()
        try:
            list(score_traces(adapter, traces[:8], args.batch_tokens))  # warm-up
            for service in services.values():
                asyncio.run(load(service.url, traces[: args.clients], args.clients))
            t_bare = float("inf")
            runs: dict[str, tuple[float, list[float], int]] = {}
            # interleaved, so drift in the machine's load hits every mode alike; best of N
            for _ in range(args.repeats):
                started = time.perf_counter()
                results = list(score_traces(adapter, traces, args.batch_tokens))
                t_bare = min(t_bare, time.perf_counter() - started)
                for name, service in services.items():
                    run = asyncio.run(load(service.url, traces, args.clients))
                    if name not in runs or run[0] < runs[name][0]:
                        runs[name] = run
            n_tokens = sum(r.n_tokens for r in results)
        finally:
            for service in services.values():
                service.stop()
    print(
        f"model: Qwen2 PRM, {args.layers} layers, hidden {args.hidden}, on {args.device}; "
        f"{len(traces)} ProcessBench-GSM8K rollouts, {n_tokens} tokens, "
        f"{args.clients} clients, batch budget {args.batch_tokens}, best of {args.repeats}"
    )

    a = len(traces) / t_bare
    b_time, b_lat, b_retries = runs["batched"]
    c_time, c_lat, c_retries = runs["unbatched"]
    b, c = len(traces) / b_time, len(traces) / c_time
    print(f"(a) bare batched score_traces:  {a:8.1f} rollouts/s  ({t_bare:.2f}s)")
    for label, rate, seconds, lat in (
        ("(b) service, batching on:    ", b, b_time, b_lat),
        ("(c) service, batching off:   ", c, c_time, c_lat),
    ):
        print(
            f"{label}  {rate:8.1f} rollouts/s  ({seconds:.2f}s)  latency p50 "
            f"{1000 * percentile(lat, 50):.0f} ms, p95 {1000 * percentile(lat, 95):.0f} ms"
        )
    if b_retries or c_retries:
        print(f"sends that broke off and were sent again: (b) {b_retries}, (c) {c_retries}")
    print(f"(b)/(a) = {b / a:.2f}  (goal >= 0.8)")
    print(f"(b)/(c) = {b / c:.1f}  (goal >= 4)")
    print(
        json.dumps(
            {
                "a": round(a, 1),
                "b": round(b, 1),
                "c": round(c, 1),
                "b_over_a": round(b / a, 3),
                "b_over_c": round(b / c, 2),
                "b_p50_ms": round(1000 * percentile(b_lat, 50)),
                "b_p95_ms": round(1000 * percentile(b_lat, 95)),
                "c_p50_ms": round(1000 * percentile(c_lat, 50)),
                "c_p95_ms": round(1000 * percentile(c_lat, 95)),
            }
        )
    )


if __name__ == "__main__":
    main()
