"""Import and export speed at PRM800K scale: 100k traces / 1M steps by default.

    python bench/import_export.py [--traces 100000] [--steps 10]

Builds a JSONL file of ProcessBench-shaped records (problem and step texts drawn
from the real ProcessBench GSM8K file, so lengths are realistic), imports it into
a fresh project with the same code path as ``import_traces``, exports it as
ProcessBench JSONL and TRL parquet, and prints traces/s, steps/s and peak memory
(RSS high-water mark of this process; the import and export stream in chunks, so
it should not grow with the file). As a baseline in the same process it also times
Django's ``bulk_create`` for the same rows on a slice, the usual way to write many rows.
Needs DATABASE_URL (PostgreSQL); it creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "processbench-gsm8k" / "gsm8k.json"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_file(path: Path, n_traces: int, n_steps: int) -> int:
    source = json.loads(DATA.read_text())
    problems = [r["problem"] for r in source]
    steps = [s for r in source for s in r["steps"]]
    rng = random.Random(0)
    total_steps = 0
    with open(path, "w") as fh:
        for i in range(n_traces):
            k = rng.randint(max(1, n_steps - 4), n_steps + 4)
            total_steps += k
            record = {
                "id": f"bench-{i}",
                "generator": rng.choice(["Qwen2-7B-Instruct", "Llama-3.1-8B-Instruct", "gpt-4o"]),
                "problem": rng.choice(problems) + f" (variant {i})",
                "steps": rng.sample(steps, k),
                "final_answer_correct": rng.random() < 0.5,
                "label": rng.randint(-1, k - 1),
            }
            fh.write(json.dumps(record) + "\n")
    return total_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10, help="mean steps per trace")
    parser.add_argument("--baseline-traces", type=int, default=5_000)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("bench/import_export.py measures the PostgreSQL path; set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = "stepwise_bench_import"
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        run(args)
    finally:
        connection.close()
        teardown_databases(old, verbosity=0)


def run(args) -> None:
    from django.db import transaction

    from annotator.exporting import write_export
    from annotator.importing import import_file
    from annotator.models import Problem, Project, Step, Trace, text_hash

    tmp = Path(tempfile.mkdtemp(prefix="stepwise-bench-"))
    path = tmp / "traces.jsonl"
    t0 = time.perf_counter()
    n_steps = make_file(path, args.traces, args.steps)
    print(
        f"input: {args.traces:,} traces, {n_steps:,} steps, {path.stat().st_size / 2**20:.0f} MiB JSONL "
        f"(written in {time.perf_counter() - t0:.1f}s)"
    )
    rss_before = peak_rss_mib()

    project = Project.objects.create(slug="bench", name="bench")
    t0 = time.perf_counter()
    summary = import_file(project, path)
    import_s = time.perf_counter() - t0
    assert summary.traces == args.traces and summary.steps == n_steps, summary
    print(
        f"import:  {import_s:6.1f}s  {args.traces / import_s:9,.0f} traces/s  {n_steps / import_s:10,.0f} steps/s  "
        f"peak RSS {peak_rss_mib():.0f} MiB (before: {rss_before:.0f} MiB)"
    )

    t0 = time.perf_counter()
    again = import_file(project, path)
    print(
        f"re-import (all duplicates): {time.perf_counter() - t0:.1f}s, {again.skipped_duplicates:,} skipped"
    )

    for fmt, name in (("processbench", "pb.jsonl"), ("trl", "trl.parquet")):
        t0 = time.perf_counter()
        exported = write_export(project, fmt, tmp / name)
        export_s = time.perf_counter() - t0
        print(
            f"export {fmt:>12} -> {name:<12} {export_s:6.1f}s  {exported.records / export_s:9,.0f} traces/s  "
            f"{n_steps / export_s:10,.0f} steps/s  {(tmp / name).stat().st_size / 2**20:.0f} MiB  "
            f"peak RSS {peak_rss_mib():.0f} MiB"
        )

    # Baseline: the same rows through Django's bulk_create, on a slice.
    base = Project.objects.create(slug="baseline", name="baseline")
    with open(path) as fh:
        records = [
            json.loads(line) for _, line in zip(range(args.baseline_traces), fh, strict=False)
        ]
    t0 = time.perf_counter()
    with transaction.atomic():
        problems = Problem.objects.bulk_create(
            [
                Problem(project=base, text=r["problem"], text_hash=text_hash(r["problem"]))
                for r in records
            ],
            batch_size=1000,
        )
        traces = Trace.objects.bulk_create(
            [
                Trace(
                    project=base,
                    problem=p,
                    source="baseline",
                    source_format="processbench",
                    external_id=r["id"],
                    generator=r["generator"],
                    num_steps=len(r["steps"]),
                )
                for p, r in zip(problems, records, strict=True)
            ],
            batch_size=1000,
        )
        Step.objects.bulk_create(
            [
                Step(trace=t, index=i, text=s)
                for t, r in zip(traces, records, strict=True)
                for i, s in enumerate(r["steps"])
            ],
            batch_size=1000,
        )
    base_s = time.perf_counter() - t0
    base_steps = sum(len(r["steps"]) for r in records)
    ours = n_steps / import_s
    print(
        f"baseline bulk_create on {len(records):,} traces: {base_steps / base_s:,.0f} steps/s "
        f"(parse excluded); import_file is {ours / (base_steps / base_s):.2f}x that"
    )


if __name__ == "__main__":
    main()
