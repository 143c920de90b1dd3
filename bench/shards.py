"""Runs split into shards: what the coordination costs as workers are added.

    python bench/shards.py [--workers 1,4,16,64] [--shard-traces 1024] [--work 1.0]
                           [--rounds 4] [--claim-rounds 40] [--short]

W simulated workers (processes on this machine, talking to PostgreSQL on loopback)
work one scoring run each round of W, through the real code a Celery task runs
(``shards.execute``: the ``SKIP LOCKED`` claim, the shard's heartbeat thread, the
shard marked done, the run's progress and, for the last shard, the run marked done).
Only the work is simulated: a sleep of ``--work`` seconds per shard.

1. Runs: W workers over a run of ``W x --rounds`` shards of ``--shard-traces`` traces,
   each taking ``--work`` seconds. Reported per W: the share of the workers' time spent
   outside the work (claiming, marking done, the cancel check, the heartbeat thread's
   start and stop: the coordination), and the run's completion time against the ideal
   (every worker busy from its start to the end), both measured in this run; the CPU
   a shard costs the worker process and the PostgreSQL backend serving it (what a
   cluster's workers and database each pay); and the machine's load average before
   the run (here the simulated workers and PostgreSQL share its CPUs).
2. Claims (after the runs, so that their load does not weigh on them; ``--claim-rounds
   0`` skips them): W workers over a run of ``W x --claim-rounds`` shards with no work
   at all, so the claims themselves are the load: shards claimed and finished per
   second, and the workers' CPU per claim.

The traces are real rows (``W x rounds x shard-traces`` per W, made in SQL); the run
has one split per W, so each W's run plans its own shards with ``shards.plan``.
``--short`` is a quick look (W = 1, 4, 16; 64-trace shards of 0.1 s).

Needs DATABASE_URL (PostgreSQL; it creates and drops its own database).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import database_name  # noqa: E402 (after the path is set)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,16,64", help="comma-separated W values")
    parser.add_argument("--shard-traces", type=int, default=1024)
    parser.add_argument("--work", type=float, default=1.0, help="seconds of work per shard")
    parser.add_argument("--rounds", type=int, default=4, help="shards per worker (runs)")
    parser.add_argument("--claim-rounds", type=int, default=40, help="shards per worker (claims)")
    parser.add_argument("--short", action="store_true", help="W = 1, 4, 16; small, fast shards")
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="runs: every worker starts at once (by default they come in spread over one "
        "shard's work, as machines do, instead of finishing every shard in the same instant)",
    )
    args = parser.parse_args()
    if args.short:
        args.workers, args.shard_traces, args.work, args.rounds = "1,4,16", 64, 0.1, 3
        args.claim_rounds = 20
    widths = [int(w) for w in args.workers.split(",")]

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django
    from django.conf import settings

    django.setup()
    logging.getLogger("annotator").setLevel(logging.WARNING)  # not a line per worker's end
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("bench/shards.py measures the PostgreSQL path; set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = database_name("shards")
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        project = build(widths, args)
        print(
            f"PostgreSQL {connection.cursor().connection.info.server_version}, "
            f"{os.cpu_count()} CPUs; heartbeat every {settings.JOB_HEARTBEAT_SECONDS} s"
        )
        print(
            f"\n1. Runs: shards of {args.shard_traces} traces, {args.work:g} s of work each, "
            f"{args.rounds} per worker"
        )
        print(
            f"{'W':>4} {'shards':>7} {'traces':>8} {'coordination':>13} {'done in':>8} "
            f"{'ideal':>6} {'over ideal':>11} {'claims/s':>9} {'CPU ms/shard: worker':>21} "
            f"{'database':>9} {'load before':>12}"
        )
        for width in widths:
            shards_n = width * args.rounds
            result = run_once(
                project,
                width,
                f"w{width}",
                shards_n,
                args.shard_traces,
                args.work,
                limit=None,
                stagger=not args.lockstep,
            )
            ideal = result["ideal"]
            share = 1 - result["work_s"] / result["worker_s"]
            print(
                f"{width:>4} {shards_n:>7} {shards_n * args.shard_traces:>8} "
                f"{100 * share:>12.2f}% {result['elapsed']:>7.2f}s {ideal:>5.1f}s "
                f"{100 * (result['elapsed'] / ideal - 1):>10.1f}% "
                f"{shards_n / result['elapsed']:>9.1f} "
                f"{1000 * result['cpu_s'] / shards_n:>21.1f} "
                f"{1000 * result['db_cpu_s'] / shards_n:>9.1f} {result['load']:>12.1f}"
            )
        if args.claim_rounds:
            print("\n2. Claims: shards with no work, claimed and finished as fast as W workers can")
            print(
                f"{'W':>4} {'shards':>7} {'seconds':>8} {'claims/s':>9} {'ms/claim/worker':>16} "
                f"{'worker CPU ms/claim':>20}"
            )
            for width in widths:
                shards_n = width * args.claim_rounds
                # Shards of one trace each over the first traces of the split.
                result = run_once(project, width, f"w{width}", shards_n, 1, 0.0, limit=shards_n)
                print(
                    f"{width:>4} {shards_n:>7} {result['elapsed']:>8.2f} "
                    f"{shards_n / result['elapsed']:>9.0f} "
                    f"{1000 * result['worker_s'] / shards_n:>16.1f} "
                    f"{1000 * result['cpu_s'] / shards_n:>20.1f}"
                )
    finally:
        connection.close()
        teardown_databases(old, verbosity=0)


def build(widths: list[int], args) -> int:
    """A project with one split per W of ``W x rounds x shard_traces`` traces (and at
    least enough for the claims), made by SQL; returns the project's id."""
    from django.db import connection

    from annotator.models import Problem, Project

    project = Project.objects.create(slug="bench-shards", name="Bench shards")
    problem = Problem.objects.create(project=project, text="1 + 1", reference_answer="2")
    t0 = time.perf_counter()
    total = 0
    with connection.cursor() as cur:
        for width in widths:
            n = width * max(args.rounds * args.shard_traces, args.claim_rounds)
            cur.execute(
                """INSERT INTO annotator_trace (project_id, problem_id, source, source_format,
                       external_id, generator, split, final_answer, final_answer_correct,
                       metadata, num_steps, is_gold, created_at, label_count)
                   SELECT %s, %s, 'bench', 'jsonl', %s || '-' || g, 'bench', %s, '2', true,
                          '{}', 3, false, now(), 0
                   FROM generate_series(1, %s) g""",
                [project.pk, problem.pk, f"w{width}", f"w{width}", n],
            )
            total += n
        cur.execute("ANALYZE annotator_trace")
    print(f"{total} traces in {len(widths)} splits made in {time.perf_counter() - t0:.1f} s")
    return project.pk


def run_once(
    project_id: int,
    width: int,
    split: str,
    shards_n: int,
    shard_traces: int,
    work: float,
    *,
    limit: int | None,
    stagger: bool = False,
) -> dict[str, float]:
    """One run of ``shards_n`` shards worked by ``width`` worker processes, coming in
    together or (``stagger``) spread over one shard's work; the workers' summed time,
    summed work time, the run's wall time, and the ideal: every worker busy from its
    start to the end."""
    from django.db import connection

    from annotator import shards
    from annotator.models import JobStatus, Project, ScoringRun, Trace

    project = Project.objects.get(pk=project_id)
    run = ScoringRun.objects.create(
        project=project,
        name=f"bench-{split}-{shard_traces}-{time.monotonic_ns()}",
        selection={"split": split},
        provenance={"adapter": "simulated"},
    )
    traces = Trace.objects.filter(project=project, split=split)
    if limit is not None:
        traces = Trace.objects.filter(pk__in=traces.order_by("id").values("id")[:limit])
    planned = shards.plan(run, traces, shard_traces)
    assert planned == shards_n, (planned, shards_n)
    connection.close()  # the children open their own

    load = os.getloadavg()[0]  # the machine's, before these workers add theirs
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(width + 1)
    results = context.Queue()
    workers = [
        context.Process(target=worker, args=(run.pk, work, delay, ready, results))
        for delay in _delays(width, work if stagger else 0.0)
    ]
    for process in workers:
        process.start()
    ready.wait()  # every worker has connected: they start together
    reports = [results.get() for _ in workers]
    for process in workers:
        process.join()
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, (run.status, run.error)
    assert not work or run.progress_done == run.progress_total
    # Each worker's own clock from its start (perf_counter is the machine's monotonic
    # clock, the same in every process), not this process's, which may wake late.
    return {
        "elapsed": max(r["ended"] for r in reports) - min(r["started"] for r in reports),
        "ideal": (
            shards_n * work
            + sum(r["started"] for r in reports)
            - width * min(r["started"] for r in reports)
        )
        / width,
        "worker_s": sum(r["ended"] - r["started"] for r in reports),
        "work_s": sum(r["work_s"] for r in reports),
        "shards": sum(r["shards"] for r in reports),
        "cpu_s": sum(r["cpu_s"] for r in reports),
        "db_cpu_s": sum(r["db_cpu_s"] for r in reports),
        "load": load,
    }


def _cpu_seconds(pid: int) -> float:
    """A process's CPU time (user and system) so far, from /proc: the PostgreSQL backend
    serving a worker runs on this machine (loopback)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _delays(width: int, spread: float) -> list[float]:
    """When each worker comes in: spread evenly over ``spread`` seconds."""
    return [spread * i / width for i in range(width)]


def worker(run_id: int, work: float, delay: float, ready, results) -> None:
    """One simulated worker: what a Celery worker does with each message of the run,
    until a message finds no shard left to take. It comes in ``delay`` seconds after
    the others' start, and its clock starts then."""
    from django.db import connection

    from annotator import jobs, shards
    from annotator.models import ScoringRun

    connection.close()  # never the parent's connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    spent = {"work_s": 0.0}

    def simulated_work(run: ScoringRun, context: jobs.JobContext) -> dict:
        """``work`` seconds of sleep for the shard's traces; none at all for 0 (the
        claims alone). The cancel check after it, as a run makes after each chunk, is
        coordination."""
        if not work:
            return {}
        t0 = time.perf_counter()
        time.sleep(work)
        spent["work_s"] += time.perf_counter() - t0
        context.progress(context.shard.traces, context.shard.traces)
        return {"traces": context.shard.traces}

    # Warm, as a worker process that has served before: the first query of each kind
    # sets up the ORM's lazy state, once per process.
    run = ScoringRun.objects.filter(pk=run_id).first()
    shards.is_sharded(run)
    done = 0
    ready.wait()
    time.sleep(delay)
    started = time.perf_counter()
    cpu = time.process_time()
    db_cpu = _cpu_seconds(backend)
    while shards.execute(ScoringRun, run_id, simulated_work, finish=lambda run: {}) is not None:
        done += 1
    results.put(
        {
            "started": started,
            "ended": time.perf_counter(),
            "work_s": spent["work_s"],
            "shards": done,
            "cpu_s": time.process_time() - cpu,
            "db_cpu_s": _cpu_seconds(backend) - db_cpu,
        }
    )
    connection.close()


if __name__ == "__main__":
    main()
