"""Server time of the project dashboard, its partials, a trace page's chart and the
Agreement page at 100k traces / 1M steps.

Builds (in its own database, ``--db``, schema from the models; reused unless
``--rebuild``) one project of ``--traces`` traces of ``--steps`` steps (best-of-4 over
a quarter as many problems, final answers right or wrong, four splits), two finished
runs with a score on every step (``StepScore`` rows and each trace's
``TraceScore.step_scores``, as ``runs.store_scores`` writes them), and human labels on
20% of the traces (a quarter of those labelled twice, for agreement), then VACUUM
ANALYZE (what autovacuum would have done by the time anyone looks). Then requests
every page through Django's request handler (middleware, session, view, template; no
network) as a reviewer, and prints the server time of the first request (nothing cached), of the first request
after ``dashboards.warm`` ran for each run (what a scoring run's end leaves cached), and
the median of ``--repeat`` more (a finished run's figures are cached until the labels
change), and the slowest dashboard partial on a cold cache (the page loads its partials
in parallel, one per region and per run, so that one bounds how long the page fills).

The baseline, measured in the same run: the same run's figures computed by the
dashboard's Python path (``annotator/dashboards_portable.py``, what SQLite gets), which
reads every labelled trace's step scores into Python and calls ``scoring.metrics``.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepwise .venv/bin/python bench/dashboard.py \\
        [--traces 100000] [--steps 10] [--repeat 3] [--rebuild] [--db stepwise_bench_dashboard]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELLED_SHARE = 0.2
DOUBLE_SHARE = 0.25  # of the labelled traces, labelled by a second annotator too


def build(n_traces: int, n_steps: int) -> None:
    """Everything by SQL in a few statements (``generate_series`` and ``random()``)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotator.models import Membership, Project, Role, ScoringRun

    User = get_user_model()
    t0 = time.perf_counter()
    with transaction.atomic():
        Project.objects.filter(slug="bench").delete()
        project = Project.objects.create(slug="bench", name="Bench")
        reviewer, _ = User.objects.get_or_create(username="bench-reviewer")
        Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
        labellers = []
        for name in ("bench-a", "bench-b"):
            user, _ = User.objects.get_or_create(username=name)
            Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
            labellers.append(user.pk)
        with connection.cursor() as cur:
            cur.execute("SELECT setseed(0.42)")
            cur.execute(
                """INSERT INTO annotator_problem (project_id, text, text_hash, reference_answer,
                       reference_solution, source, external_id, created_at)
                   SELECT %s, 'Problem ' || g, md5('a' || g) || md5('b' || g), g::text, '',
                          'bench', 'p' || g, now()
                   FROM generate_series(1, %s) g""",
                [project.pk, n_traces // 4],
            )
            cur.execute(
                """INSERT INTO annotator_trace (project_id, problem_id, source, source_format,
                       external_id, generator, split, final_answer, final_answer_correct,
                       metadata, num_steps, is_gold, created_at, label_count)
                   SELECT p.project_id, p.id, 'bench', 'jsonl', p.external_id || '-' || k,
                          'model-' || k,
                          (ARRAY['gsm8k', 'math', 'olympiadbench', 'omnimath'])[1 + p.id %% 4],
                          ok::text, ok = 1, '{}', %s, false, now(), 0
                   FROM annotator_problem p, generate_series(1, 4) k,
                        LATERAL (SELECT (random() * 2)::int + 0 * k AS ok) a
                   WHERE p.project_id = %s""",
                [n_steps, project.pk],
            )
            cur.execute(
                """INSERT INTO annotator_step (trace_id, index, text)
                   SELECT t.id, i, 'Step ' || i || ' of trace ' || t.id
                   FROM annotator_trace t, generate_series(0, %s - 1) i
                   WHERE t.project_id = %s""",
                [n_steps, project.pk],
            )
            # Labels: a first error uniform over -1 .. steps-1 on 20% of the traces.
            cur.execute(
                """CREATE TEMP TABLE bench_label AS
                   SELECT t.id AS trace_id, floor(random() * (%s + 1))::int - 1 AS label,
                          random() < %s AS twice
                   FROM annotator_trace t WHERE t.project_id = %s AND random() < %s""",
                [n_steps, DOUBLE_SHARE, project.pk, LABELLED_SHARE],
            )
            for k, user_id in enumerate(labellers):
                cur.execute(
                    f"""INSERT INTO annotator_annotation (trace_id, annotator_id,
                           external_annotator, kind, first_error_step, bad_problem, gave_up,
                           bad_step_split, flag_reason, note, seconds_spent, version,
                           is_latest, created_at)
                        SELECT trace_id, %s, '', 'label',
                               CASE WHEN random() < 0.8 THEN label
                                    ELSE floor(random() * (%s + 1))::int - 1 END,
                               false, false, false, '', '', 20 + random() * 60, 1, true,
                               now() - (random() * interval '30 days')
                        FROM bench_label {"WHERE twice" if k else ""}""",
                    [user_id, n_steps],
                )
        for name in ("prm-a", "prm-b"):
            run = ScoringRun.objects.create(
                project=project, name=name, status="done", threshold=0.5, source="imported"
            )
            with connection.cursor() as cur:
                # Scores that know something: lower at and after the labelled first error.
                cur.execute(
                    """INSERT INTO annotator_stepscore (run_id, trace_id, step_index, score)
                       SELECT %s, s.trace_id, s.index,
                              (CASE WHEN l.label IS NOT NULL AND l.label >= 0
                                         AND s.index >= l.label THEN random() * 0.7
                                    ELSE 0.3 + random() * 0.7 END)::real
                       FROM annotator_step s JOIN annotator_trace t ON t.id = s.trace_id
                       LEFT JOIN bench_label l ON l.trace_id = s.trace_id
                       WHERE t.project_id = %s""",
                    [run.pk, project.pk],
                )
                cur.execute(
                    # The per-trace aggregates as ``runs.store_scores`` writes them.
                    """INSERT INTO annotator_tracescore (run_id, trace_id, min_score, last_score,
                           mean_score, log_product, predicted_first_error, n_tokens, extras,
                           step_scores)
                       SELECT %s, s.trace_id, min(s.score),
                              (array_agg(s.score ORDER BY s.step_index DESC))[1],
                              avg(s.score::float8),
                              CASE WHEN bool_or(s.score = 0) THEN '-Infinity'::float8
                                   ELSE sum(ln(s.score::float8)) END,
                              coalesce(min(s.step_index) FILTER (WHERE s.score < 0.5), -1), 0, '{}',
                              array_agg(s.score ORDER BY s.step_index)
                       FROM annotator_stepscore s WHERE s.run_id = %s GROUP BY s.trace_id""",
                    [run.pk, run.pk],
                )
        with connection.cursor() as cur:
            cur.execute("DROP TABLE bench_label")
    with connection.cursor() as cur:
        # What autovacuum would have done by the time anyone looks: statistics, and the
        # visibility map (index-only scans) of the freshly written tables.
        cur.execute("VACUUM ANALYZE")
    print(f"built in {time.perf_counter() - t0:.1f}s")


def timed(client, url: str, repeat: int, runs: list) -> tuple[float, float, float, int]:
    """(ms of the first request on an empty cache, ms of the first request after each
    run's ``dashboards.warm`` (what a run's end leaves cached), median ms of ``repeat``
    more, size)."""
    from django.core.cache import cache

    from annotator import dashboards

    cache.clear()
    times = []
    size = 0
    for k in range(repeat + 2):
        if k == 1:
            cache.clear()
            for run in runs:
                dashboards.warm(run)
        started = time.perf_counter()
        response = client.get(url, HTTP_HX_REQUEST="true")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        size = len(response.content)
    return times[0], times[1], statistics.median(times[2:]), size


def python_baseline(run) -> float:
    """ms for the run's figures (the ProcessBench table, sweep, AUROC, histograms) by
    the dashboard's Python path (``annotator/dashboards_portable.py``, what a database
    without PostgreSQL's aggregates gets): every labelled trace's step scores read into
    Python and handed to ``scoring.metrics``."""
    from annotator import dashboards, dashboards_portable

    started = time.perf_counter()
    dashboards_portable.runs_figures([run], dashboards.Filters())
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--db", default="stepwise_bench_dashboard")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import setup_databases

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench/dashboard.py measures the PostgreSQL path; set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = args.db
    # The schema from the models (as the tests build it), kept between runs.
    settings.DATABASES["default"]["TEST"]["MIGRATE"] = False
    # No serialized copy of the database (that is for TransactionTestCase, and reads
    # every row).
    setup_databases(
        verbosity=0, interactive=False, keepdb=not args.rebuild, serialized_aliases=set()
    )
    settings.ALLOWED_HOSTS = ["*"]

    from django.contrib.auth import get_user_model
    from django.db import ProgrammingError, connection
    from django.test import Client
    from django.urls import reverse

    from annotator.models import Project, ScoringRun, StepScore, Trace, TraceScore

    try:
        project = Project.objects.filter(slug="bench").first()
        # Every column of the tables the dashboard reads, not only the project's.
        TraceScore.objects.first()
    except ProgrammingError:  # the models changed since the database was kept
        print("the schema changed: rebuilding")
        connection.close()
        setup_databases(verbosity=0, interactive=False, keepdb=False, serialized_aliases=set())
        project = None
    if args.rebuild or project is None or project.traces.count() != args.traces:
        build(args.traces, args.steps)
        project = Project.objects.get(slug="bench")
    runs = list(ScoringRun.objects.filter(project=project).order_by("id"))
    n_steps = StepScore.objects.filter(run=runs[0]).count()
    print(
        f"{project.traces.count():,} traces, {n_steps:,} steps, {len(runs)} runs "
        f"({2 * n_steps:,} step scores), labels on {LABELLED_SHARE:.0%} of traces"
    )
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-reviewer"))
    slug = project.slug
    trace = Trace.objects.filter(project=project).order_by("id")[args.traces // 2]
    pages = [
        ("dashboard page", reverse("dashboard", args=[slug])),
        ("runs side by side", reverse("dashboard-runs", args=[slug])),
        *[
            (f"run figures ({run.name})", reverse("dashboard-run", args=[slug, run.pk]))
            for run in runs
        ],
        *[
            (f"best of N ({run.name})", reverse("dashboard-run-best-of-n", args=[slug, run.pk]))
            for run in runs
        ],
        ("labelling", reverse("dashboard-annotation", args=[slug])),
        ("disagreements", reverse("dashboard-disagreements", args=[slug, runs[0].pk])),
        ("trace score chart", reverse("trace-score-chart", args=[slug, trace.pk])),
        ("agreement page", reverse("agreement", args=[slug])),
    ]
    client.get(pages[0][1])  # warm up: templates, connection
    baseline = python_baseline(runs[0])
    print(
        f"baseline: one run's figures by the Python path (dashboards_portable): {baseline:8.0f} ms"
    )
    from annotator import dashboards

    for run in runs:
        started = time.perf_counter()
        dashboards.warm(run)
        print(
            f"warming run {run.name}'s cache at its end: "
            f"{(time.perf_counter() - started) * 1000:8.0f} ms"
        )
    print(
        f"{'':<28}{'cold':>8}{'1st':>11}{'warm':>11}"
        "   (1st: first visit after the runs' warm-up; figures cached per run, filters, labels)"
    )
    partials = {}
    for name, url in pages:
        cold, first, warm, size = timed(client, url, args.repeat, runs)
        print(
            f"{name:<28}{cold:8.0f} ms {first:7.0f} ms {warm:7.0f} ms  {size / 1024:5.0f} KiB"
            f"  (cold {cold / baseline:5.2f} x baseline)"
        )
        if url.startswith(reverse("dashboard", args=[slug])) and name != "dashboard page":
            partials[name] = cold
    heaviest = max(partials, key=partials.get)
    print(f"heaviest dashboard partial, cold: {heaviest}, {partials[heaviest]:.0f} ms")


if __name__ == "__main__":
    main()
