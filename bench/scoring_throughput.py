"""Scoring throughput on the CPU: our pipeline vs a bare forward vs prefix-by-prefix.

A Qwen2.5-Math-PRM-shaped model (random weights, 4 layers, hidden 256) with a BPE
tokenizer trained on the traces themselves scores ProcessBench-GSM8K traces:
(a) ``score_traces`` (tokenization, bucketing, padding, forward, read-out),
(b) a bare batched forward over the same padded batches (the limit for (a)),
(c) one forward per step prefix, as the reference scripts do.
Tokens/s counts each trace's own tokens once, so (c) pays for its repeated prefixes.

    .venv/bin/python bench/scoring_throughput.py [--traces 200] [--batch-tokens 8192]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from scoring.adapters import load_adapter
from scoring.batching import plan_batches
from scoring.engine import pad_batch, score_by_prefixes, score_traces
from scoring.formats import read_traces
from scoring.tiny import build_qwen_prm

DATA = Path(__file__).resolve().parents[2] / "shared/data/processbench-gsm8k/gsm8k.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument(
        "--prefix-traces", type=int, default=50, help="traces for (c), the slow one"
    )
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings for (a) and (b)")
    args = parser.parse_args()

    torch.manual_seed(0)
    traces = read_traces(DATA)[: args.traces]
    corpus = [t.problem + "\n" + "\n\n".join(t.steps) for t in read_traces(DATA)]
    with tempfile.TemporaryDirectory() as tmp:
        build_qwen_prm(tmp, hidden=args.hidden, layers=args.layers, corpus=corpus, vocab_size=4000)
        adapter = load_adapter("qwen-prm", tmp, device="cpu")

    encoded = [adapter.encode(t) for t in traces]
    lengths = [len(e.input_ids) for e in encoded]
    n_tokens = sum(lengths)
    batches = plan_batches(lengths, args.batch_tokens)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    print(
        f"model: Qwen2 PRM, {args.layers} layers, hidden {args.hidden}, vocab {len(adapter.tokenizer)}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, fp32"
    )
    print(
        f"traces: {len(traces)} ProcessBench-GSM8K, {n_tokens} tokens (mean {n_tokens / len(traces):.0f}, "
        f"max {max(lengths)}), {sum(len(t.steps) for t in traces)} steps; "
        f"batch budget {args.batch_tokens} -> {len(batches)} batches, padding {100 * (padded / n_tokens - 1):.1f}%"
    )

    list(score_traces(adapter, traces[:8], args.batch_tokens))  # warm-up

    def pipeline() -> float:
        start = time.perf_counter()
        list(score_traces(adapter, traces, args.batch_tokens))
        return time.perf_counter() - start

    tensors = [pad_batch([encoded[i].input_ids for i in b], adapter.pad_id) for b in batches]

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for input_ids, attention_mask in tensors:
                adapter.model(input_ids=input_ids, attention_mask=attention_mask)
        return time.perf_counter() - start

    t_pipeline = t_bare = float("inf")
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        t_pipeline = min(t_pipeline, pipeline())
        t_bare = min(t_bare, bare())

    prefix_traces = traces[: args.prefix_traces]
    prefix_tokens = sum(lengths[: args.prefix_traces])
    start = time.perf_counter()
    for trace in prefix_traces:
        score_by_prefixes(adapter, trace)
    t_prefix = time.perf_counter() - start
    t_pipeline_same = pipeline_on(adapter, prefix_traces, args.batch_tokens)

    a, b = n_tokens / t_pipeline, n_tokens / t_bare
    c, a_same = prefix_tokens / t_prefix, prefix_tokens / t_pipeline_same
    print(f"(a) pipeline (score_traces):        {a:10,.0f} tokens/s  ({t_pipeline:.2f}s)")
    print(f"(b) bare batched forward:           {b:10,.0f} tokens/s  ({t_bare:.2f}s)")
    print(
        f"(c) prefix by prefix ({len(prefix_traces)} traces):  {c:10,.0f} tokens/s  ({t_prefix:.2f}s)"
    )
    print(f"(a)/(b) = {a / b:.2f}")
    print(
        f"(a)/(c) = {a_same / c:.1f}  (pipeline on the same {len(prefix_traces)} traces: {a_same:,.0f} tokens/s)"
    )
    print(
        json.dumps(
            {
                "a": round(a),
                "b": round(b),
                "c": round(c),
                "a_over_b": round(a / b, 3),
                "a_over_c": round(a_same / c, 2),
            }
        )
    )


def pipeline_on(adapter, traces, batch_tokens: int) -> float:
    start = time.perf_counter()
    list(score_traces(adapter, traces, batch_tokens))
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
