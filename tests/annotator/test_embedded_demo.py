"""The no-server fallback: the demo on SQLite and the filesystem broker comes up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.factories import DATA_DIR, sqlite_env

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()  # responses carry their template context
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
client = Client()
client.force_login(get_user_model().objects.get(username="demo"))
for url in ["/", "/p/gsm8k-demo/", "/p/gsm8k-demo/traces/1/", "/p/gsm8k-demo/annotate/",
            "/p/gsm8k-demo/review/", "/p/gsm8k-demo/agreement/"]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
print("traces:", client.get("/p/gsm8k-demo/").context["page"].paginator.count)
# A random queue order on SQLite (no seeded hash there): every trace gets its own rank.
from annotator import queue
from annotator.models import Project, QueueOrder, Trace
project = Project.objects.get(slug="gsm8k-demo")
project.queue_order = QueueOrder.RANDOM
project.save()
demo = get_user_model().objects.get(username="demo")
assert queue.claim_next(project, demo).trace
# Traces imported later are ranked on the next claim, among the earlier ones.
Trace.objects.filter(project=project, id__in=Trace.objects.filter(project=project)
                     .order_by("-id").values("id")[:100]).update(queue_rank=None)
assert queue.claim_next(project, demo).trace
ranks = list(Trace.objects.filter(project=project).values_list("queue_rank", flat=True))
assert None not in ranks and len(set(ranks)) == len(ranks), "queue ranks collide"
# The demo run keeps each trace's step scores on its row too (JSON text on SQLite).
import math
from annotator import runs
from annotator.models import TraceScore
rows = list(TraceScore.objects.select_related("run", "trace")[:50])
assert rows
for row in rows:
    steps = runs.scores_by_trace([row.run], row.trace)[row.run_id]
    assert len(row.step_scores) == len(steps) == row.trace.num_steps
    assert all(a == b or math.isnan(a) and math.isnan(b) for a, b in zip(row.step_scores, steps))
# Every queue order the settings offer serves traces on SQLite, through "next" (a POST
# that claims): the model-driven ones rank by the demo's scoring run.
from annotator.models import ScoringRun
run = ScoringRun.objects.filter(project=project, status="done").first()
assert run is not None
wrong_scored = set(TraceScore.objects.filter(run=run, trace__final_answer_correct=False,
                                             min_score__isnull=False)
                   .values_list("trace_id", flat=True))
assert wrong_scored
for order in QueueOrder.values:
    Project.objects.filter(pk=project.pk).update(queue_order=order, queue_run=run)
    project.refresh_from_db()
    served = []
    for _ in range(3):
        response = client.post("/p/gsm8k-demo/annotate/next/")
        assert response.status_code == 302, (order, response.status_code)
        trace_id = int(response.url.rstrip("/").rsplit("/", 1)[1])
        served.append(trace_id)
        queue.skip(project, Trace.objects.get(pk=trace_id), demo)
    ranks = list(Trace.objects.filter(project=project).values_list("queue_rank", flat=True))
    assert None not in ranks, order
    if order == QueueOrder.CONVINCING_WRONG:
        assert set(served) <= wrong_scored, served
    print("order served:", order, served)
"""


def test_the_demo_runs_on_sqlite_without_any_server(sqlite_var):
    env = sqlite_env(sqlite_var)
    manage = [sys.executable, "manage.py"]
    demo = subprocess.run(
        [*manage, "setup_demo", "--data-dir", str(DATA_DIR)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Demo login: username 'demo'" in demo.stdout
    check = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert "traces: 5676" in check.stdout  # 400 ProcessBench + 4 x 1319 model solutions
    for order in ("import", "random", "convincing_wrong", "runs_disagree", "run_vs_humans"):
        assert f"order served: {order} " in check.stdout
