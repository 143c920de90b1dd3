"""Load: concurrent annotators claim and submit through the API against gunicorn on
PostgreSQL, then the invariants are checked in the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepwise .venv/bin/python bench/load.py \
        [--annotators 20] [--seconds 60] [--traces 5000] [--per-trace 3] [--workers 3 --threads 8]

It creates and drops its own database (``stepwise_bench_load_<pid>_<random>``, one per
run, so that two runs at once never drop each other's) and serves it with gunicorn's
threaded workers, as docker-compose.yml does.

Prints p50/p95/p99 latency and requests/s per endpoint, then checks: no trace holds
more than N labels, every 201 submission is stored exactly once, zero 5xx.
``tests/annotator/test_load.py`` runs the same load and checks, bounded by work
rather than time, against the test server.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event, Lock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import database_name  # noqa: E402 (after the path is set)


@dataclass
class LoadResult:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    # (username, trace id, annotation id) of every submission answered 201
    submissions: list[tuple[str, int, int]] = field(default_factory=list)
    seconds: float = 0.0
    lock: Lock = field(default_factory=Lock)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.statuses[status] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def _request(url: str, token: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def annotate(
    base_url: str, slug: str, username: str, token: str, result: LoadResult, stop: Event
) -> None:
    """One annotator: claim the next trace, label it all-correct, until the queue has
    nothing more for them or ``stop`` is set."""
    import json

    api = f"{base_url}/api/v1/projects/{slug}"
    while not stop.is_set():
        start = time.perf_counter()
        status, body = _request(f"{api}/claim/", token, b"{}")
        result.record("claim", status, time.perf_counter() - start)
        if status != 200:
            continue
        trace = json.loads(body)["trace"]
        if trace is None:
            return
        start = time.perf_counter()
        status, body = _request(
            f"{api}/traces/{trace['id']}/label/", token, b'{"first_error_step": -1}'
        )
        result.record("submit", status, time.perf_counter() - start)
        if status == 201:
            with result.lock:
                result.submissions.append((username, trace["id"], json.loads(body)["id"]))


def run_load(
    base_url: str, slug: str, tokens: dict[str, str], seconds: float | None = None
) -> LoadResult:
    """Every annotator in ``tokens`` ({username: token}) in its own thread, for
    ``seconds`` or until the queue runs dry for all of them."""
    result = LoadResult()
    stop = Event()
    start = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        futures = [
            pool.submit(annotate, base_url, slug, user, token, result, stop)
            for user, token in tokens.items()
        ]
        if seconds is not None:
            time.sleep(seconds)
            stop.set()
        for future in futures:
            future.result()
    result.seconds = time.perf_counter() - start
    return result


def invariant_failures(project, result: LoadResult) -> list[str]:
    """What went wrong, checked in the database (empty when all holds)."""
    from django.db.models import Count

    from annotator.models import Annotation, AnnotationKind

    problems = []
    if result.server_errors:
        problems.append(f"{result.server_errors} responses were 5xx")
    labels = Annotation.objects.filter(
        trace__project=project, kind=AnnotationKind.LABEL, is_latest=True
    )
    over = labels.values("trace").annotate(n=Count("id")).filter(n__gt=project.annotators_per_trace)
    if over.exists():
        problems.append(f"{over.count()} traces hold more than {project.annotators_per_trace}")
    stored = dict(labels.values_list("id", "trace_id"))
    submitted = Counter((user, trace) for user, trace, _ in result.submissions)
    if repeats := [key for key, n in submitted.items() if n > 1]:
        problems.append(f"{len(repeats)} traces were submitted twice by one annotator")
    missing = [a for _, trace, a in result.submissions if stored.get(a) != trace]
    if missing:
        problems.append(f"{len(missing)} answered submissions are not stored")
    if len(stored) != len(result.submissions):
        problems.append(f"{len(stored)} labels stored for {len(result.submissions)} submissions")
    return problems


def report(result: LoadResult) -> None:
    total = sum(len(v) for v in result.latencies.values())
    print(f"{total} requests in {result.seconds:.1f} s: {total / result.seconds:.0f} requests/s")
    for endpoint, values in sorted(result.latencies.items()):
        q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
        print(
            f"  {endpoint:7s} n={len(values):6d}  p50 {q[49] * 1000:7.1f} ms  "
            f"p95 {q[94] * 1000:7.1f} ms  p99 {q[98] * 1000:7.1f} ms"
        )
    print(f"  statuses: {dict(sorted(result.statuses.items()))}")
    print(f"  submissions stored: {len(result.submissions)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--traces", type=int, default=5000)
    parser.add_argument("--per-trace", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--no-migrations", action="store_true", help="build the schema from the models"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        os.environ[name] = "false"  # plain HTTP on loopback
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("bench/load.py measures PostgreSQL; set DATABASE_URL=postgres://...")
    # Its own database, created and dropped here, as bench/import_export.py does.
    settings.DATABASES["default"]["TEST"]["NAME"] = database_name("load")
    if args.no_migrations:
        from django.apps import apps

        settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        problems = load(args)
    finally:
        connection.close()
        teardown_databases(old, verbosity=0)
    sys.exit(1 if problems else 0)


def load(args: argparse.Namespace) -> list[str]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotator.models import Membership, Problem, Project, Role, Step, Trace, text_hash

    project = Project.objects.create(slug="load", name="load", annotators_per_trace=args.per_trace)
    problems = Problem.objects.bulk_create(
        Problem(project=project, text=f"problem {i}", text_hash=text_hash(f"problem {i}"))
        for i in range(args.traces)
    )
    traces = Trace.objects.bulk_create(
        Trace(project=project, problem=p, source="load", source_format="jsonl", external_id=str(i),
              num_steps=3)
        for i, p in enumerate(problems)
    )  # fmt: skip
    Step.objects.bulk_create(
        Step(trace=t, index=i, text=f"step {i}") for t in traces for i in range(3)
    )
    tokens = {}
    for i in range(args.annotators):
        user = get_user_model().objects.create_user(f"annotator-{i}")
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        tokens[user.username] = Token.objects.create(user=user).key

    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    }
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "annotator.wsgi", "-b", f"127.0.0.1:{port}",
         "--worker-class", "gthread", "--workers", str(args.workers),
         "--threads", str(args.threads), "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        print(
            f"{args.annotators} annotators, {args.seconds:.0f} s, {args.traces} traces x "
            f"{args.per_trace}; gunicorn gthread {args.workers} x {args.threads} on PostgreSQL"
        )
        result = run_load(f"http://127.0.0.1:{port}", project.slug, tokens, args.seconds)
    finally:
        server.terminate()
        server.wait()
    report(result)
    problems = invariant_failures(project, result)
    print("invariants: " + ("all hold" if not problems else "; ".join(problems)))
    return problems


if __name__ == "__main__":
    main()
