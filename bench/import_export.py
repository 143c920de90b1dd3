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
import atexit
import json
import os
import random
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import database_name  # noqa: E402 (after the path is set)

DATA = ROOT.parent / "shared" / "data" / "processbench-gsm8k" / "gsm8k.json"


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and the database server (read from
    /proc, so only when PostgreSQL runs on this machine; else this process alone). On
    a shared machine the wall times swing with the other work on it; the work done
    for the import or export itself is steadier."""
    return sum(cpu_split())


def cpu_split() -> tuple[float, float]:
    """``cpu_seconds`` as (this process, the database server). The server's is every
    PostgreSQL process's, with those that have exited (counted in the postmaster's
    children's times): an export reads ahead on a connection of its own, whose
    backend is gone by the time the export returns."""
    clock = os.sysconf("SC_CLK_TCK")
    server = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:  # exited meanwhile
            continue
        if head.endswith("(postgres"):
            fields = tail.split()
            server += sum(int(x) for x in fields[11:15]) / clock
    return time.process_time(), server


def load() -> str:
    """The machine's load averages: figures taken beside other work swing with it."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def peak_rss_mib() -> float:
    """This process's peak RSS since the last ``reset_peak_rss`` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> float:
    """Start the peak RSS afresh (so the COPY-in limit, which holds the whole file's
    records, does not hide the import's); returns the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return peak_rss_mib()


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
    parser.add_argument(
        "--no-migrations", action="store_true", help="build the schema from the models"
    )
    parser.add_argument(
        "--without-foreign-keys",
        action="store_true",
        help="what-if: drop the foreign-key constraints the import's rows are checked"
        " against before importing, to show what they cost (a problem's project, a"
        " trace's project and problem, a label's trace and annotator: 5 checks per"
        " labelled trace at commit; steps have none)",
    )
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    # With DEBUG off the settings need a key; a throwaway one will do here.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("bench/import_export.py measures the PostgreSQL path; set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = database_name("import")
    if args.no_migrations:
        from django.apps import apps

        settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
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

    if args.without_foreign_keys:
        print(f"what-if: foreign keys dropped: {', '.join(drop_import_foreign_keys())}")
    print(f"load (1, 5, 15 min) at the start: {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="stepwise-bench-"))
    atexit.register(shutil.rmtree, tmp, True)  # its files run to hundreds of MiB
    path = tmp / "traces.jsonl"
    t0 = time.perf_counter()
    n_steps = make_file(path, args.traces, args.steps)
    print(
        f"input: {args.traces:,} traces, {n_steps:,} steps, {path.stat().st_size / 2**20:.0f} MiB JSONL "
        f"(written in {time.perf_counter() - t0:.1f}s)"
    )
    limit_before = copy_in_limit(path, durable=True)
    rss_before = reset_peak_rss()
    project = Project.objects.create(slug="bench", name="bench")
    c0, t0 = cpu_split(), time.perf_counter()
    summary = import_file(project, path)
    import_s = time.perf_counter() - t0
    import_split = [after - before for after, before in zip(cpu_split(), c0, strict=True)]
    import_cpu = sum(import_split)
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

    export_times = {}
    export_cpu = {}
    for fmt, name in (("processbench", "pb.jsonl"), ("trl", "trl.parquet")):
        c0, t0 = cpu_split(), time.perf_counter()
        exported = write_export(project, fmt, tmp / name)
        export_s = export_times[fmt] = time.perf_counter() - t0
        export_cpu[fmt] = [after - before for after, before in zip(cpu_split(), c0, strict=True)]
        print(
            f"export {fmt:>12} -> {name:<12} {export_s:6.1f}s  {exported.records / export_s:9,.0f} traces/s  "
            f"{n_steps / export_s:10,.0f} steps/s  {(tmp / name).stat().st_size / 2**20:.0f} MiB  "
            f"peak RSS {peak_rss_mib():.0f} MiB"
        )

    rss_before = peak_rss_mib()
    bomb_s, bomb_mib = refuse_bomb(tmp)
    print(
        f"safety: a {bomb_mib:.2f} MiB gzip of [ + 1 GiB of spaces + ] refused in {bomb_s:.2f}s, "
        f"peak RSS {peak_rss_mib():.0f} MiB (before: {rss_before:.0f} MiB)"
    )

    # The machine's limit, in the same run: the same rows parsed and COPYed raw into
    # two bare tables (a primary key each, a unique index on the external id), and
    # the ProcessBench records built by PostgreSQL itself and COPYed out.
    # Each limit is the best of two tries, so that a hiccup of the machine does not
    # flatter the ratio.
    # The COPY-in limit is tried once just before the import and once after it, so that
    # a change in the machine's load during the run shows (both are printed).
    tries_in = [limit_before, copy_in_limit(path, durable=True)]
    limit_in, limit_in_cpu, limit_in_server = map(min, zip(*tries_in, strict=True))
    limit_temp = min(copy_in_limit(path, durable=False)[0] for _ in range(2))
    print(
        f"limit: raw COPY in {limit_in:6.1f}s ({n_steps / limit_in:10,.0f} steps/s) into committed tables"
        f" (best of {tries_in[0][0]:.1f}s before the import and {tries_in[1][0]:.1f}s after);"
        f" import_file takes {import_s / limit_in:.1f}x that"
    )
    print(
        f"limit: raw COPY in {limit_temp:6.1f}s into temporary tables (no write-ahead log); "
        f"import_file takes {import_s / limit_temp:.1f}x that"
    )
    limit_out, limit_out_cpu = map(
        min, zip(*(copy_out_limit(project.pk, tmp / "limit.jsonl") for _ in range(2)), strict=True)
    )
    c0, t0 = cpu_split(), time.perf_counter()
    write_export(project, "processbench", tmp / "pb.jsonl")
    export_pb = min(export_times["processbench"], time.perf_counter() - t0)
    again = [after - before for after, before in zip(cpu_split(), c0, strict=True)]
    export_pb_split = min(export_cpu["processbench"], again, key=sum)
    export_pb_cpu = sum(export_pb_split)
    print(
        f"limit: server-side json_build_object COPY out {limit_out:6.1f}s; "
        f"ProcessBench export takes {export_pb:.1f}s (best of two) = {export_pb / limit_out:.1f}x that"
    )
    print(
        f"work (CPU seconds of this process and the database server, steadier than the wall"
        f" times on a shared machine): import {import_cpu:.1f}s (this process"
        f" {import_split[0]:.1f}s, the server {import_split[1]:.1f}s), COPY-in limit"
        f" {limit_in_cpu:.1f}s (the server {limit_in_server:.1f}s) = {import_cpu / limit_in_cpu:.1f}x; ProcessBench export"
        f" {export_pb_cpu:.1f}s (the server {export_pb_split[1]:.1f}s), COPY-out limit"
        f" {limit_out_cpu:.1f}s = {export_pb_cpu / limit_out_cpu:.1f}x"
    )
    print(f"load (1, 5, 15 min) at the end: {load()}")

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


def drop_import_foreign_keys() -> list[str]:
    """Drop (in the bench's own database) the foreign-key constraints of the tables an
    import writes to (only labels have any); returns them as table.column."""
    from django.db import connection

    from annotator.models import Annotation, Problem, Trace

    tables = [m._meta.db_table for m in (Problem, Trace, Annotation)]
    dropped = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, c.conname, a.attname FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s)",
            [tables],
        )
        for table, name, column in cursor.fetchall():
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            dropped.append(f"{table}.{column}")
    return sorted(dropped)


def copy_in_limit(path: Path, *, durable: bool) -> tuple[float, float, float]:
    """Seconds (wall, then CPU as ``cpu_seconds`` counts it, then the server's part of it) to parse ``path`` (orjson, line by line) and COPY its traces and steps
    into two bare tables: what any importer on this machine needs at least.

    ``durable``: ordinary tables, committed, as an import's rows are (written to the
    write-ahead log and flushed at commit); otherwise temporary tables, which skip both."""
    import orjson
    from django.db import connection, transaction

    kind = "" if durable else "TEMP"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS limit_trace, limit_step")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE {kind} TABLE limit_trace (id bigint PRIMARY KEY, external_id text UNIQUE, "
            "problem text, generator text, label int)"
        )
        cursor.execute(
            f"CREATE {kind} TABLE limit_step (trace_id bigint, index int, text text, "
            "PRIMARY KEY (trace_id, index))"
        )
    c0, t0 = cpu_split(), time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        with open(path, "rb") as fh, raw.copy("COPY limit_trace FROM STDIN") as traces:
            records = [orjson.loads(line) for line in fh]
            for i, r in enumerate(records):
                traces.write_row((i, r["id"], r["problem"], r["generator"], r["label"]))
        with raw.copy("COPY limit_step FROM STDIN") as steps:
            for i, r in enumerate(records):
                for k, text in enumerate(r["steps"]):
                    steps.write_row((i, k, text))
    seconds = time.perf_counter() - t0
    split = [after - before for after, before in zip(cpu_split(), c0, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS limit_trace, limit_step")
    return seconds, sum(split), split[1]


def copy_out_limit(project_id: int, out: Path) -> tuple[float, float]:
    """Seconds (wall, then CPU as ``cpu_seconds`` counts it) for PostgreSQL to build the ProcessBench records itself and COPY them
    out to a file: what any exporter on this machine needs at least."""
    from django.db import connection

    query = """
        COPY (
            SELECT json_build_object(
                'id', t.external_id, 'generator', t.generator, 'problem', p.text,
                'steps', (SELECT json_agg(s.text ORDER BY s.index)
                          FROM annotator_step s WHERE s.trace_id = t.id),
                'final_answer_correct', t.final_answer_correct,
                'label', (SELECT a.first_error_step FROM annotator_annotation a
                          WHERE a.trace_id = t.id AND a.is_latest LIMIT 1))
            FROM annotator_trace t JOIN annotator_problem p ON p.id = t.problem_id
            WHERE t.project_id = %s ORDER BY t.id
        ) TO STDOUT
    """
    c0, t0 = cpu_seconds(), time.perf_counter()
    with (
        connection.cursor() as cursor,
        open(out, "wb") as fh,
        cursor.cursor.copy(query, [project_id]) as copy,
    ):
        for block in copy:
            fh.write(block)
    return time.perf_counter() - t0, cpu_seconds() - c0


def refuse_bomb(tmp: Path) -> tuple[float, float]:
    """Seconds to refuse ``[`` + 1 GiB of spaces + ``]`` gzipped, and its size in MiB."""
    import zlib

    from scoring.formats import ImportFormatError, open_records

    path = tmp / "bomb.json.gz"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(compressor.compress(b"["))
        block = b" " * 2**20
        for _ in range(1024):
            fh.write(compressor.compress(block))
        fh.write(compressor.compress(b"]") + compressor.flush())
    t0 = time.perf_counter()
    try:
        list(open_records(path).records)
    except ImportFormatError:
        pass
    else:
        raise AssertionError("the bomb was read")
    return time.perf_counter() - t0, path.stat().st_size / 2**20


if __name__ == "__main__":
    main()
