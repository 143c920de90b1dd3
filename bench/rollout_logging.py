"""How fast ``log_rollouts`` stores a trainer's rollouts, as the reward service calls it.

    python bench/rollout_logging.py [--rollouts 10000] [--batches 1,8,64,512]

Logs ``--rollouts`` rollouts (``tests.factories.rollout_records``: two transforms, up to
seven steps, problems repeating) into a fresh project once per batch size, a call per
batch as the service makes one per scored batch, then sends the last run again (every
rollout a retry: nothing written). Prints rollouts/s and milliseconds per call for each
batch size, and as the baseline in the same run one call holding every rollout (the
importer's best case: one transaction for the lot), with each batch size's rate as a
ratio of it. Then it times the Rewards page and its two partials over the baseline
project's rollouts (best of three, through Django's request handler), against the
project page of the same project in the same run. Needs DATABASE_URL (PostgreSQL); it
creates and drops its own database.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import database_name  # noqa: E402 (after the path is set)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--batches", default="1,8,64,512", help="batch sizes, comma-separated")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        sys.exit("bench/rollout_logging.py measures the PostgreSQL path; set DATABASE_URL")
    settings.DATABASES["default"]["TEST"]["NAME"] = database_name("rollouts")
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        run(args.rollouts, [int(b) for b in args.batches.split(",")])
    finally:
        connection.close()
        teardown_databases(old, verbosity=0)


def log_all(slug: str, records: list[dict], batch: int) -> tuple[float, int, int]:
    """Seconds, rollouts written and calls, logging ``records`` ``batch`` at a time."""
    from annotator.rollouts import log_rollouts

    written = 0
    calls = 0
    t0 = time.perf_counter()
    for start in range(0, len(records), batch):
        written += log_rollouts(slug, records[start : start + batch])
        calls += 1
    return time.perf_counter() - t0, written, calls


def run(n: int, batches: list[int]) -> None:
    from annotator.models import Project
    from tests.factories import rollout_records

    records = rollout_records(n)
    Project.objects.create(slug="baseline", name="baseline")
    base_s, written, _ = log_all("baseline", records, n)
    assert written == n
    print(f"baseline: {n:,} rollouts in one call: {base_s:6.2f}s  {n / base_s:8,.0f} rollouts/s")
    for batch in batches:
        slug = f"batch-{batch}"
        Project.objects.create(slug=slug, name=slug)
        seconds, written, calls = log_all(slug, records, batch)
        assert written == n
        print(
            f"batches of {batch:>5}: {seconds:6.2f}s  {n / seconds:8,.0f} rollouts/s"
            f"  ({base_s / seconds:.2f}x the baseline's rate)"
            f"  {seconds / calls * 1000:.1f} ms a call"
        )
    seconds, written, calls = log_all(slug, records, batches[-1])
    assert written == 0
    print(
        f"retried, batches of {batches[-1]}: {seconds:6.2f}s  {n / seconds:8,.0f} rollouts/s,"
        f" nothing written  {seconds / calls * 1000:.1f} ms a call"
    )

    page_times(n)


def page_times(n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.urls import reverse

    from annotator.models import Membership, Project, Role

    setup_test_environment()  # the test client's host allowed
    project = Project.objects.get(slug="baseline")
    owner = get_user_model().objects.create_user("bench-owner")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    client = Client()
    client.force_login(owner)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    def best(url: str) -> tuple[float, int]:
        times = []
        for _ in range(3):
            with CaptureQueriesContext(connection) as queries:
                t0 = time.perf_counter()
                response = client.get(url, secure=True)  # no redirect to HTTPS
                assert response.status_code == 200, (
                    url,
                    response.status_code,
                    response.content[:300],
                )
                times.append(time.perf_counter() - t0)
        return min(times), len(queries)

    base_s, base_q = best(reverse("project", args=[project.slug]))
    print(f"pages over {n:,} rollouts: project page {base_s * 1000:6.0f} ms, {base_q} queries")
    for name in ("rewards", "rewards-charts", "rewards-suspects"):
        seconds, queries = best(reverse(name, args=[project.slug]))
        print(
            f"  {name:<17} {seconds * 1000:6.0f} ms ({seconds / base_s:.1f}x the project page),"
            f" {queries} queries"
        )


if __name__ == "__main__":
    main()
