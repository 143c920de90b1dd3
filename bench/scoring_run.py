"""Scoring runs: the worker's overhead over bare scoring, and storing 1M step scores.

    python bench/scoring_run.py [--model DIR --adapter qwen-prm] [--device cpu|cuda]
                                [--copies 1] [--traces 100000] [--steps 10]

1. Throughput: the same model scores the ProcessBench GSM8K traces (``--copies``
   times over) twice in this one process's measurement: bare ``score_traces`` over
   the traces read from the file, and a scoring run through a real Celery worker
   process (Redis broker), from the run's claim to its end (reading steps from the
   database, committing every chunk, heartbeats, progress). The worker's model is
   loaded by a warm-up run first, as it stays loaded for later runs in production.
   Without ``--model`` a tiny random Qwen-PRM is built (``scoring.tiny``).
2. Storage: ``--traces`` x ``--steps`` step scores written as a run writes them
   (``runs.store_scores`` in chunks of ``STEPWISE_SCORING_CHUNK_TRACES`` traces),
   against the machine's limit measured in the same run: one raw psycopg ``COPY`` of
   the same rows, as one block of text in a single transaction, into a bare table
   (no index), and into a bare table with the same primary key.

Needs DATABASE_URL (PostgreSQL; it creates and drops its own database) and
CELERY_BROKER_URL (Redis).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import database_name  # noqa: E402 (after the path is set)

DATA = ROOT.parent / "shared" / "data" / "processbench-gsm8k" / "gsm8k.json"


def step_score_text(rows: list[tuple[int, int, int, float]]) -> str:
    """COPY's text format, as ``runs.store_scores`` writes it: one line per step."""
    return "".join(f"{r}\t{t}\t{i}\t{s!r}\n" for r, t, i, s in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: a tiny Qwen-PRM)")
    parser.add_argument("--adapter", default="qwen-prm")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--copies", type=int, default=1, help="score the 400 traces N times")
    parser.add_argument("--traces", type=int, default=100_000, help="storage: traces")
    parser.add_argument("--steps", type=int, default=10, help="storage: steps per trace")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("bench/scoring_run.py measures the PostgreSQL path; set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = database_name("scoring")
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        throughput(args)
        storage(args)
    finally:
        connection.close()
        teardown_databases(old, verbosity=0)


def _device(args) -> str:
    if args.device:
        return args.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def throughput(args) -> None:
    from django.conf import settings

    from annotator import runs
    from annotator.celery import app
    from annotator.importing import import_file
    from annotator.models import Project, Scorer, ScoringRun, Trace
    from scoring.adapters import load_adapter
    from scoring.engine import score_traces
    from scoring.formats import read_traces

    tmp = Path(tempfile.mkdtemp(prefix="stepwise-bench-"))
    atexit.register(shutil.rmtree, tmp, True)  # its files run to hundreds of MiB
    model = args.model
    if not model:
        from scoring.tiny import build_qwen_prm

        model = str(build_qwen_prm(tmp / "tiny-qwen-prm"))
    device = _device(args)
    records = json.loads(DATA.read_text())
    path = tmp / "traces.jsonl"
    with path.open("w") as fh:
        for copy in range(args.copies):
            for record in records:
                fh.write(json.dumps({**record, "id": f"{record['id']}-{copy}"}) + "\n")
    traces = read_traces(path)
    print(f"throughput: {len(traces)} traces, {args.adapter} {model} on {device}")

    adapter = load_adapter(args.adapter, model, device=device)
    list(score_traces(adapter, traces[:20]))  # warm-up: kernels, allocator
    t0 = time.perf_counter()
    bare_tokens = sum(r.n_tokens for r in score_traces(adapter, traces))
    bare_s = time.perf_counter() - t0
    bare_rate = bare_tokens / bare_s
    print(f"  bare score_traces:   {bare_s:7.2f}s  {bare_rate:10,.0f} tokens/s")
    del adapter

    project = Project.objects.create(slug="bench", name="bench")
    import_file(project, path)
    scorer = Scorer.objects.create(
        name="bench", adapter=args.adapter, model=model, options={"device": device}
    )
    db = settings.DATABASES["default"]
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "STEPWISE_VAR_DIR": str(tmp / "var"),
    }
    app.connection_for_write().default_channel.client.flushdb()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--quiet",
            "-A",
            "annotator",
            "worker",
            "-l",
            "warning",
            "-c",
            "1",
            "-Q",
            scorer.queue,
            "-n",
            f"bench-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        warm = runs.start_run(
            project,
            scorer,
            None,
            selection={"ids": list(Trace.objects.values_list("id", flat=True)[:20])},
            name="warm-up",
        )
        _wait(warm.pk, ScoringRun)
        run = runs.start_run(project, scorer, None, name="measured")
        run = _wait(run.pk, ScoringRun)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert run.status == "done", run.error
    assert run.tokens == bare_tokens, (run.tokens, bare_tokens)
    worker_s = (run.finished_at - run.started_at).total_seconds()
    worker_rate = run.tokens / worker_s
    print(
        f"  through the worker:  {worker_s:7.2f}s  {worker_rate:10,.0f} tokens/s  "
        f"= {worker_rate / bare_rate:.2f}x bare (claim to done: DB reads, commits, heartbeats)"
    )


def _wait(pk: int, model):
    while True:
        job = model.objects.get(pk=pk)
        if job.is_finished:
            return job
        time.sleep(0.2)


def storage(args) -> None:
    from django.db import connection
    from django.utils import timezone

    from annotator import runs
    from annotator.bulk import allocate_ids, copy_rows
    from annotator.models import Problem, Project, ScoringRun, StepScore, Trace
    from scoring.types import StepScores

    n_traces, n_steps = args.traces, args.steps
    total = n_traces * n_steps
    print(f"storage: {total:,} step scores ({n_traces:,} traces x {n_steps} steps)")
    project = Project.objects.create(slug="bench-storage", name="bench storage")
    problem = Problem.objects.create(project=project, text="p", text_hash="p")
    ids = allocate_ids(Trace, n_traces)
    now = timezone.now()
    copy_rows(
        Trace,
        (
            "id",
            "project_id",
            "problem_id",
            "source",
            "source_format",
            "external_id",
            "generator",
            "split",
            "final_answer",
            "final_answer_correct",
            "metadata",
            "num_steps",
            "is_gold",
            "created_at",
        ),
        [
            (
                i,
                project.pk,
                problem.pk,
                "bench",
                "jsonl",
                str(i),
                "",
                "",
                "",
                None,
                "{}",
                n_steps,
                False,
                now,
            )
            for i in ids
        ],
        with_ids=True,
    )
    run = ScoringRun.objects.create(project=project, name="store", status="running")
    rng = random.Random(0)
    results = [
        StepScores(trace_id=str(i), scores=tuple(rng.random() for _ in range(n_steps))) for i in ids
    ]
    chunk = int(os.environ.get("STEPWISE_SCORING_CHUNK_TRACES", 1024))
    t0 = time.perf_counter()
    for start in range(0, len(results), chunk):
        runs.store_scores(run, results[start : start + chunk])
    ours = time.perf_counter() - t0
    assert StepScore.objects.filter(run=run).count() == total

    rows = [(run.pk, int(r.trace_id), k, s) for r in results for k, s in enumerate(r.scores)]
    timings = {}
    with connection.cursor() as cursor:
        for label, ddl in (
            (
                "bare table",
                "CREATE TABLE bench_copy (run_id bigint, trace_id bigint, step_index int, score real)",
            ),
            (
                "same primary key",
                "CREATE TABLE bench_copy (run_id bigint, trace_id bigint, step_index int, score real, PRIMARY KEY (run_id, trace_id, step_index))",
            ),
        ):
            cursor.execute("DROP TABLE IF EXISTS bench_copy")
            cursor.execute(ddl)
            t0 = time.perf_counter()
            with cursor.cursor.copy("COPY bench_copy FROM STDIN") as copy:
                copy.write(step_score_text(rows))  # the fastest way in from Python
            timings[label] = time.perf_counter() - t0
        cursor.execute("DROP TABLE bench_copy")
    print(f"  store_scores:        {ours:7.2f}s  {total / ours:12,.0f} scores/s")
    for label, seconds in timings.items():
        print(
            f"  raw COPY, {label:<17}{seconds:5.2f}s  {total / seconds:12,.0f} scores/s"
            f"  -> store_scores takes {ours / seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
