"""Monte-Carlo labelling: rollouts per trace (exhaustive vs binary search), and completions/s
through the server completer (many requests in flight vs one at a time).

    python bench/montecarlo.py [--n 8] [--p 0.5] [--delay 0.05] [--requests 256] [--in-flight 32]

1. Rollouts: every ProcessBench GSM8K trace (400, with expert first-error labels) labelled
   in both modes with a scripted completer that errs from the labelled first error on:
   from a prefix that holds no wrong step each completion is right with probability
   ``--p`` (seeded), from one that does, never. Reported: rollouts per trace in each mode
   (exhaustive with and without the problem-alone rollouts that PAV needs), the ratio,
   binary search's bound ``N * ceil(log2(M + 1))``, and how often each mode's first error
   equals the label (below 100 % only where every rollout from a good prefix happened to
   fail: ``(1 - p)^N``).
2. Throughput: ``--requests`` prompts, ``n = --n`` completions each, through
   ``OpenAICompleter`` against the scripted loopback server of the tests
   (``tests/scoring/mc_server.py``) with a fixed ``--delay`` per request: one request at a
   time (the baseline) against ``--in-flight`` requests in flight, in this one run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "processbench-gsm8k" / "gsm8k.json"


class ErrsFromTheLabel:
    """A scripted completer for one trace: right (``\\boxed{1}``) with probability ``p``
    from a prefix before the labelled first error, wrong (``\\boxed{0}``) from it on."""

    def __init__(self, steps: Sequence[str], label: int, p: float, rng: random.Random) -> None:
        from scoring.montecarlo import PromptTemplate

        template = PromptTemplate()
        self.length = {template.prefix(steps[:k]): k for k in range(len(steps) + 1)}
        self.label, self.p, self.rng = label, p, rng

    def complete(self, prompts, n):
        from scoring.montecarlo import Rollouts

        out = []
        for prompt in prompts:
            length = self.length[prompt.prefix]  # steps 0..length-1 in the prefix
            good = self.label == -1 or length <= self.label
            texts = tuple(
                "\\boxed{1}" if good and self.rng.random() < self.p else "\\boxed{0}"
                for _ in range(n)
            )
            out.append(Rollouts(texts, tokens=n * 4))
        return out


def rollouts_per_trace(n: int, p: float) -> None:
    from scoring.montecarlo import binary_search_bound, estimate_binary, estimate_exhaustive
    from scoring.types import Trace

    records = json.loads(DATA.read_text())
    rng = random.Random(0)
    figures: dict[str, list[int]] = {"exhaustive": [], "exhaustive+problem": [], "binary": []}
    right = {"exhaustive": 0, "binary": 0}
    bound = []
    started = time.perf_counter()
    for record in records:
        trace = Trace(record["problem"], record["steps"], reference_answer="1", id=record["id"])
        completer = ErrsFromTheLabel(trace.steps, record["label"], p, rng)
        full = estimate_exhaustive(trace, completer, n)
        binary = estimate_binary(trace, completer, n)
        figures["exhaustive+problem"].append(full.rollouts)
        figures["exhaustive"].append(full.rollouts - n)
        figures["binary"].append(binary.rollouts)
        right["exhaustive"] += full.first_error == record["label"]
        right["binary"] += binary.first_error == record["label"]
        bound.append(binary_search_bound(n, len(trace.steps)))
    seconds = time.perf_counter() - started
    steps = [len(r["steps"]) for r in records]
    print(
        f"1. Rollouts per trace, ProcessBench GSM8K ({len(records)} traces, "
        f"{statistics.mean(steps):.1f} steps on average, max {max(steps)}), N = {n}, p = {p}"
    )
    base = statistics.mean(figures["exhaustive"])
    for name, values in figures.items():
        print(
            f"   {name:<20} {statistics.mean(values):7.1f} per trace  (total {sum(values):>6})"
            f"  x{statistics.mean(values) / base:.2f} of exhaustive"
        )
    print(
        f"   binary bound N*ceil(log2(M+1)): {statistics.mean(bound):.1f} per trace on average; "
        f"max used/bound = {max(b / c for b, c in zip(figures['binary'], bound, strict=True)):.2f}"
    )
    misses = (1 - p) ** n
    print(
        f"   first error = label: exhaustive {right['exhaustive']}/{len(records)}, "
        f"binary {right['binary']}/{len(records)}  (a good prefix fails all N with "
        f"probability {misses:.4f})"
    )
    print(f"   ({seconds:.1f}s for both modes, grading included)")


def throughput(n: int, delay: float, requests: int, in_flight: int) -> None:
    from scoring.completers import OpenAICompleter, Sampling
    from scoring.montecarlo import Prompt
    from tests.scoring import mc_server

    process, url = mc_server.spawn(delay=delay)
    try:
        prompts = [
            Prompt(f"What is {i} + 1?\n\n", f"What is {i} + 1?", "") for i in range(requests)
        ]
        one = OpenAICompleter(url, "m", Sampling(seed=0), max_in_flight=1)
        started = time.perf_counter()
        for prompt in prompts:
            one.complete([prompt], n)
        sequential = time.perf_counter() - started

        many = OpenAICompleter(url, "m", Sampling(seed=0), max_in_flight=in_flight)
        mc_server.reset(url)
        started = time.perf_counter()
        many.complete(prompts, n)
        concurrent = time.perf_counter() - started
        seen = mc_server.stats(url)["max_in_flight"]
        many.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    total = requests * n
    print(
        f"2. Server completer, {requests} requests x n = {n} against a loopback server with "
        f"{delay * 1000:.0f} ms per request"
    )
    print(f"   one at a time:      {total / sequential:9.1f} completions/s  ({sequential:.2f}s)")
    print(
        f"   {in_flight:>3} in flight:      {total / concurrent:9.1f} completions/s  "
        f"({concurrent:.2f}s; the server saw up to {seen} at once)"
    )
    print(f"   ratio: x{sequential / concurrent:.1f}  (ideal x{min(in_flight, requests)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="rollouts per prefix")
    parser.add_argument(
        "--p", type=float, default=0.5, help="chance a good prefix's rollout is right"
    )
    parser.add_argument("--delay", type=float, default=0.05, help="server seconds per request")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    if not 0 < args.p <= 1 or args.n < 1:
        parser.error("need 0 < p <= 1 and n >= 1")
    rollouts_per_trace(args.n, args.p)
    throughput(args.n, args.delay, args.requests, args.in_flight)


if __name__ == "__main__":
    main()
