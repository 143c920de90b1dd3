"""Server time of "submit and next" in the labelling workspace at 100k traces.

Builds (once) a PostgreSQL database ``stepwise_bench`` with one project of
``--traces`` traces (8 steps each, best-of-4 over a quarter as many problems),
40% of them already labelled once by 20 earlier annotators, 1% gold questions,
overlap 2 and gold questions mixed in at 5%. Then one annotator labels
``--requests`` traces through Django's request handler (middleware, session, view,
template; no network), each request an htmx POST that stores the label and returns
the next trace. Prints p50/p95/max server time and queries per request.

It measures two annotators: a fresh one, and one with a history (``--history``,
default 10,000): labels already stored on the first traces of the queue, so that the
traces they started sit at its head, where a claim that walks past their own labels
would slow down with every label. The fresh annotator is the baseline.

    .venv/bin/python bench/annotation_latency.py [--traces 100000] [--requests 300]
        [--history 10000] [--order import|random] [--rebuild] [--explain] [--db NAME]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SERVER = "postgres://postgres@127.0.0.1:5432"
DB_NAME = "stepwise_bench"
PRIOR_ANNOTATORS = 20
STEPS = 8


def ensure_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def build(n_traces: int, order: str) -> None:
    """Problems, traces, steps and earlier labels, written by SQL in a few statements,
    ranked in the queue as the importer ranks a project's first traces
    (``ranking.import_ranks``/``finish_import_ranks``): the bench starts right after an
    import, as a team starts labelling."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotator import ranking
    from annotator.models import Membership, Project, Role

    User = get_user_model()
    t0 = time.perf_counter()
    with transaction.atomic():
        Project.objects.filter(slug="bench").delete()
        project = Project.objects.create(
            slug="bench", name="Bench", annotators_per_trace=2, gold_rate=0.05, queue_order=order
        )
        ranks = ranking.import_ranks(project)
        prior = []
        for i in range(PRIOR_ANNOTATORS):
            user, _ = User.objects.get_or_create(username=f"bench-prior-{i}")
            Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
            prior.append(user.pk)
        with connection.cursor() as cur:
            cur.execute(
                """INSERT INTO annotator_problem (project_id, text, text_hash, reference_answer,
                       reference_solution, source, external_id, created_at)
                   SELECT %s, 'Problem ' || g || ': what is \\(' || g || ' \\cdot 2\\)?',
                          md5('a' || g) || md5('b' || g), (2 * g)::text, '', 'bench', 'p' || g, now()
                   FROM generate_series(1, %s) g""",
                [project.pk, n_traces // 4],
            )
            cur.execute(
                """INSERT INTO annotator_trace (project_id, problem_id, source, source_format,
                       external_id, generator, split, final_answer, final_answer_correct,
                       metadata, num_steps, is_gold, created_at, label_count)
                   SELECT p.project_id, p.id, 'bench', 'jsonl', p.external_id || '-' || k,
                          'gen-' || k, 'test', '', NULL, '{}', %s, false, now(), 0
                   FROM annotator_problem p CROSS JOIN generate_series(0, 3) k
                   WHERE p.project_id = %s ORDER BY p.id, k""",
                [STEPS, project.pk],
            )
            cur.execute(
                """INSERT INTO annotator_step (trace_id, "index", text)
                   SELECT t.id, i, 'Step ' || i || ' of ' || t.external_id || ': so \\(' || i
                          || ' \\cdot 3 = ' || (i * 3) || '\\), and we go on with the next part.'
                   FROM annotator_trace t CROSS JOIN generate_series(0, %s) i
                   WHERE t.project_id = %s""",
                [STEPS - 1, project.pk],
            )
            cur.execute("SELECT min(id) FROM annotator_trace WHERE project_id = %s", [project.pk])
            first_id = cur.fetchone()[0]
            if ranks.rank is not None:
                # The import order ranks a trace by its id, written with its row.
                assert ranks.rank(first_id) == first_id, "only the import and random orders"
                cur.execute(
                    "UPDATE annotator_trace SET queue_rank = id WHERE project_id = %s", [project.pk]
                )
            # 1% gold questions with a gold label; 40% of the rest labelled once already.
            cur.execute(
                "UPDATE annotator_trace SET is_gold = true WHERE project_id = %s AND id %% 100 = 7",
                [project.pk],
            )
            cur.execute(
                """INSERT INTO annotator_annotation (trace_id, annotator_id, external_annotator,
                       kind, first_error_step, step_ratings, bad_problem, gave_up, bad_step_split,
                       flag_reason, note, seconds_spent, version, is_latest, created_at)
                   SELECT t.id, %s, '', 'gold', (t.id %% 9) - 1, NULL, false, false, false,
                          '', '', NULL, 1, true, now()
                   FROM annotator_trace t WHERE t.project_id = %s AND t.is_gold""",
                [prior[0], project.pk],
            )
            cur.execute(
                """INSERT INTO annotator_annotation (trace_id, annotator_id, external_annotator,
                       kind, first_error_step, step_ratings, bad_problem, gave_up, bad_step_split,
                       flag_reason, note, seconds_spent, version, is_latest, created_at)
                   SELECT t.id, (%s::bigint[])[1 + t.id %% %s], '', 'label', (t.id %% 9) - 1,
                          NULL, false, false, false, '', '', 40, 1, true, now()
                   FROM annotator_trace t
                   WHERE t.project_id = %s AND NOT t.is_gold AND t.id %% 5 IN (0, 1)""",
                [prior, PRIOR_ANNOTATORS, project.pk],
            )
            cur.execute(
                """UPDATE annotator_trace SET label_count = 1
                   WHERE project_id = %s AND NOT is_gold AND id %% 5 IN (0, 1)""",
                [project.pk],
            )
        ranking.finish_import_ranks(ranks, first_id)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    print(f"built {n_traces} traces in {time.perf_counter() - t0:.1f} s", flush=True)


def reset_runs(project) -> None:
    """Remove what earlier runs of this script labelled, so every run starts alike."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotator.models import Annotation, Assignment

    User = get_user_model()
    runners = User.objects.filter(username__startswith="bench-run")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            """UPDATE annotator_trace SET label_count = label_count - 1 WHERE id IN (
                   SELECT trace_id FROM annotator_annotation a JOIN auth_user u
                   ON u.id = a.annotator_id WHERE u.username LIKE 'bench-run%%'
                   AND a.is_latest AND a.kind = 'label' AND NOT a.gave_up)"""
        )
        Annotation.objects.filter(annotator__in=runners).delete()
        Assignment.objects.filter(annotator__in=runners).delete()
        runners.delete()
    project.refresh_from_db()


def give_history(project, user, n_labels: int) -> None:
    """``n_labels`` labels by ``user`` on the first unlabelled regular traces in queue
    order, each the trace's first label (so they stay in the queue for others)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            """CREATE TEMP TABLE history ON COMMIT DROP AS
               SELECT id FROM annotator_trace
               WHERE project_id = %s AND NOT is_gold AND label_count = 0
               ORDER BY queue_rank, id LIMIT %s""",
            [project.pk, n_labels],
        )
        cur.execute(
            """INSERT INTO annotator_annotation (trace_id, annotator_id, external_annotator,
                   kind, first_error_step, step_ratings, bad_problem, gave_up, bad_step_split,
                   flag_reason, note, seconds_spent, version, is_latest, created_at)
               SELECT id, %s, '', 'label', -1, NULL, false, false, false, '', '', 30, 1, true,
                      now() - interval '1 day'
               FROM history""",
            [user.pk],
        )
        cur.execute(
            "UPDATE annotator_trace SET label_count = 1 WHERE id IN (SELECT id FROM history)"
        )
        cur.execute("ANALYZE annotator_annotation")


def measure(project, user, args) -> tuple[list[float], list[int]]:
    """Server time (ms) and queries of ``args.requests`` submit-and-next requests."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    client = Client()
    client.force_login(user)
    rng = random.Random(0)
    response = client.post(reverse("annotate-claim", args=[project.slug]), HTTP_HX_REQUEST="true")
    trace_id = int(re.search(rb'data-trace-id="(\d+)"', response.content).group(1))
    timings: list[float] = []
    queries: list[int] = []
    for i in range(args.warmup + args.requests):
        data = {"first_error_step": str(rng.choice([-1, -1, 0, 3, 7])), "served_at": "0"}
        url = reverse("annotate-submit", args=[project.slug, trace_id])
        with CaptureQueriesContext(connection) as captured:
            t = time.perf_counter()
            response = client.post(url, data, HTTP_HX_REQUEST="true")
            elapsed = time.perf_counter() - t
        assert response.status_code == 200, response.content[:500]
        trace_id = int(re.search(rb'data-trace-id="(\d+)"', response.content).group(1))
        if i >= args.warmup:
            timings.append(elapsed * 1000)
            # Statements; BEGIN/COMMIT (logged by Django outside tests) are not counted.
            queries.append(
                sum(1 for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT"))
            )
    return timings, queries


def measure_baseline(project, user, args) -> tuple[list[float], list[float], list[float]]:
    """The same machine's floor, measured in the same run: server time (ms) of the
    same workspace rendered for a given trace with no queue work (the htmx GET of
    ``annotate/<id>/``), of one database round trip (``SELECT 1``), and of one commit
    that waits for the disk (a transaction that writes one WAL record, a transactional
    logical message, so its commit is flushed as a label's is). A submit-and-next figure reads against these across
    machines; its slowest requests are mostly slow disk flushes."""
    from django.db import connection, transaction
    from django.test import Client
    from django.urls import reverse

    from annotator.models import Trace

    client = Client()
    client.force_login(user)
    ids = list(
        Trace.objects.filter(project=project)
        .order_by("queue_rank", "id")
        .values_list("id", flat=True)[: args.warmup + args.requests]
    )
    page: list[float] = []
    for i, trace_id in enumerate(ids):
        url = reverse("annotate-trace", args=[project.slug, trace_id])
        t = time.perf_counter()
        response = client.get(url, HTTP_HX_REQUEST="true")
        elapsed = time.perf_counter() - t
        assert response.status_code == 200, response.content[:500]
        if i >= args.warmup:
            page.append(elapsed * 1000)
    trips: list[float] = []
    with connection.cursor() as cur:
        for i in range(args.warmup + args.requests):
            t = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            if i >= args.warmup:
                trips.append((time.perf_counter() - t) * 1000)
    flushes: list[float] = []
    for i in range(args.warmup + args.requests):
        t = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT pg_logical_emit_message(true, 'stepwise-bench', '')")
        if i >= args.warmup:
            flushes.append((time.perf_counter() - t) * 1000)
    return page, trips, flushes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--db", default=DB_NAME, help="database to build and use")
    parser.add_argument("--order", choices=["import", "random"], default="import")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print the claim query plan")
    parser.add_argument(
        "--no-vacuum",
        dest="vacuum",
        action="store_false",
        help="skip VACUUM ANALYZE after the first request has ranked the queue",
    )
    args = parser.parse_args()

    ensure_database(args.db)
    os.environ["DATABASE_URL"] = f"{SERVER}/{args.db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    os.environ.setdefault("STEPWISE_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("DEBUG", "true")  # served over plain HTTP by the test client
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from annotator.models import Membership, Project, Role, Trace
    from annotator.ranking import ensure_ranked

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    project = Project.objects.filter(slug="bench").first()
    if (
        args.rebuild
        or project is None
        or Trace.objects.filter(project=project).count() != args.traces
        or project.queue_order != args.order
    ):
        build(args.traces, args.order)
        project = Project.objects.get(slug="bench")
    reset_runs(project)
    project.queue_order = args.order
    project.save(update_fields=["queue_order"])

    users = {}
    for name in ("fresh", "history"):
        users[name] = get_user_model().objects.create_user(f"bench-run-{name}")
        Membership.objects.create(project=project, user=users[name], role=Role.ANNOTATOR)

    # The first claim after the import: what the team's first labeller waits for, in a
    # process already warm (templates, URLs, connection) from a page with no queue work.
    # An import ranks its traces, so this claim finds the queue ranked; a project whose
    # order changed since is re-ranked here (``ensure_ranked``), and that shows.
    client = Client()
    client.force_login(users["fresh"])
    client.get(reverse("project", args=[project.slug]))
    t = time.perf_counter()
    ensure_ranked(project)
    response = client.post(reverse("annotate-claim", args=[project.slug]), HTTP_HX_REQUEST="true")
    first_claim = time.perf_counter() - t
    assert response.status_code == 200, response.content[:500]
    give_history(project, users["history"], args.history)
    if args.vacuum:
        # Ranking rewrote every trace row: autovacuum clears the dead index entries
        # within a minute or so; do it now so the figures do not depend on its timing.
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE annotator_trace")

    results = {name: measure(project, user, args) for name, user in users.items()}
    page, trips, flushes = measure_baseline(project, users["fresh"], args)

    if args.explain:
        from django.db import transaction
        from django.utils import timezone

        from annotator.queue import _CANDIDATE_SQL, _locking, candidate_params

        params = candidate_params(project, users["history"], timezone.now())
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("EXPLAIN ANALYZE " + _locking(_CANDIDATE_SQL), params)
            print("\n".join(row[0] for row in cur.fetchall()))

    n = Trace.objects.filter(project=project).count()
    print(
        f"traces={n} order={args.order} requests={args.requests} (after {args.warmup} warm-up)\n"
        f"first claim after the import (ranks the queue if needed): {first_claim * 1000:.1f} ms"
    )
    page_p95 = percentile(page, 0.95)
    print(
        f"baseline, same run: workspace page with no queue work p50={statistics.median(page):.1f} ms "
        f"p95={page_p95:.1f} ms; one database round trip p50={statistics.median(trips):.3f} ms "
        f"p95={percentile(trips, 0.95):.3f} ms; one commit to disk p50={statistics.median(flushes):.2f} ms "
        f"p95={percentile(flushes, 0.95):.2f} ms"
    )
    base_p95 = percentile(results["fresh"][0], 0.95)
    for name, (timings, queries) in results.items():
        who = "fresh annotator" if name == "fresh" else f"after {args.history:,} own labels"
        p95 = percentile(timings, 0.95)
        print(
            f"{who:>26}: submit-and-next p50={statistics.median(timings):.1f} ms "
            f"p95={p95:.1f} ms max={max(timings):.1f} ms (p95 x{p95 / base_p95:.2f} of fresh, "
            f"x{p95 / page_p95:.2f} of the page baseline); "
            f"statements per request (BEGIN/COMMIT not counted) min={min(queries)} max={max(queries)} "
            f"median={statistics.median(queries):.0f}"
        )


if __name__ == "__main__":
    main()
