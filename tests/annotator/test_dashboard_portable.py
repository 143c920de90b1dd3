"""The dashboard without PostgreSQL: ``annotator/dashboards_portable.py`` computes every
figure in Python from the rows. On PostgreSQL both paths run on the same random project
and must agree figure for figure; then the same project built in an SQLite database
(the embedded demo's, in a child process with the app's own settings) serves every
dashboard region with the same tables as PostgreSQL serves, and a project above the
Python path's limit gets a message naming it."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from pprint import pformat

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotator import dashboards, dashboards_portable, labelsets, runs
from annotator.importing import import_file
from annotator.models import (
    REFERENCE_GENERATOR,
    Annotation,
    AnnotationKind,
    JobStatus,
    Membership,
    MonteCarloRun,
    Project,
    Role,
    ScoringRun,
    Trace,
    TraceMC,
    TraceScore,
)
from tests.factories import sqlite_env

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = 30
SOLUTIONS = 4
# Scores on a grid of 1/1024: exact in PostgreSQL's 4-byte floats and SQLite's 8-byte
# ones alike, so both databases hold the same numbers (and the coarse run has ties).
GRID = {"prm-fine": 1024, "prm-coarse": 8}


def build_project(tmp_path: Path, seed: int = 11) -> Project:
    """A project of random traces over three splits (one unnamed), a reference solution
    on some problems, imported labels, Stepwise labels that agree, disagree and are
    adjudicated, a label set, two imported runs (one with ties, one with steps without
    a score) and a finished Monte-Carlo run. The same arguments build the same project
    on any database."""
    rng = random.Random(seed)
    User = get_user_model()
    owner = User.objects.create_user("owen", password="pw-owen-123")
    others = [User.objects.create_user(name) for name in ("ann", "bob")]
    project = Project.objects.create(slug="portable", name="Portable")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    records = []
    for p in range(PROBLEMS):
        for s in range(SOLUTIONS + (1 if p % 7 == 0 else 0)):
            n = rng.randint(1, 6)
            answer = str(rng.choice([p, p, p + 1, p + 2]))
            records.append(
                {
                    "id": f"p{p}-s{s}",
                    "problem": f"Problem {p}: what is {p} + 0?",
                    "steps": [f"step {i} of solution {s}" for i in range(n)],
                    "split": ("gsm8k", "math", "")[p % 3],
                    "generator": REFERENCE_GENERATOR if s == SOLUTIONS else f"model-{s % 2}",
                    "final_answer": answer if rng.random() > 0.05 else "",
                    "final_answer_correct": answer == str(p) if rng.random() > 0.1 else None,
                    "first_error_step": rng.choice([-1, *range(n)]) if rng.random() < 0.6 else None,
                }
            )
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    import_file(project, path, "jsonl")
    traces = list(Trace.objects.filter(project=project).order_by("external_id"))
    for trace in traces[::5]:
        labels = [rng.choice([-1, *range(trace.num_steps)]) for _ in others]
        if rng.random() < 0.5:
            labels[1] = labels[0]
        for user, label in zip(others, labels, strict=True):
            Annotation.objects.create(trace=trace, annotator=user, first_error_step=label)
        if rng.random() < 0.3:
            Annotation.objects.create(
                trace=trace,
                annotator=owner,
                kind=AnnotationKind.ADJUDICATION,
                first_error_step=labels[1],
            )
    for name, grid in GRID.items():
        lines = []
        for k, trace in enumerate(traces):
            if rng.random() < 0.1:
                continue  # not every trace scored
            scores = [rng.randint(0, grid) / grid for _ in range(trace.num_steps)]
            if grid == 1024 and k % 17 == 3:
                scores[rng.randrange(trace.num_steps)] = None
            lines.append(json.dumps({"id": trace.external_id, "scores": scores}))
        runs.import_scores(
            project,
            io.BytesIO(("\n".join(lines) + "\n").encode()),
            "s.jsonl",
            name=name,
            user=owner,
        )
    labelsets.create_label_set(project, "coarse-at-half", "scoring", {"run": "prm-coarse"})
    mc = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:1", status=JobStatus.DONE
    )
    for trace in traces[::2]:
        TraceMC.objects.create(
            run=mc, trace=trace, first_error=rng.choice([-1, *range(trace.num_steps)])
        )
    return project


def region_tables(client: Client, project: Project) -> dict[str, object]:
    """Every dashboard region's table as its CSV download gives it, trace ids written as
    external ids (the two databases number rows apart), under each filter."""
    slug = project.slug
    names = dict(Trace.objects.filter(project=project).values_list("pk", "external_id"))
    score_runs = list(ScoringRun.objects.filter(project=project).order_by("name"))
    label_set = project.label_sets.get(name="coarse-at-half")
    mc = MonteCarloRun.objects.get(project=project)
    found: dict[str, object] = {}
    for label, query in (
        ("all", {}),
        ("split", {"split": "math"}),
        ("tau", {"tau": "0.3"}),
        ("label set", {"label_set": label_set.pk}),
    ):
        urls = {
            "runs": reverse("dashboard-runs", args=[slug]),
            "best of N, all runs": reverse("dashboard-best-of-n", args=[slug]),
            "labelling": reverse("dashboard-annotation", args=[slug]),
            "mc disagreements": reverse("dashboard-mc-disagreements", args=[slug, mc.pk]),
        }
        for run in score_runs:
            urls[f"{run.name} figures"] = reverse("dashboard-run", args=[slug, run.pk])
            urls[f"{run.name} best of N"] = reverse("dashboard-run-best-of-n", args=[slug, run.pk])
            urls[f"{run.name} disagreements"] = reverse(
                "dashboard-disagreements", args=[slug, run.pk]
            )
        other = score_runs[1]
        urls["run pair"] = (
            reverse("dashboard-disagreements", args=[slug, score_runs[0].pk])
            + f"?against={other.pk}"
        )
        for name, url in urls.items():
            response = client.get(url, {**query, "format": "csv"})
            assert response.status_code == 200, (name, label, response.status_code)
            rows = list(csv.reader(io.StringIO(response.content.decode())))
            if "disagreements" in name or name == "run pair":
                rows = [rows[0]] + [[names[int(row[0])], *row[1:]] for row in rows[1:]]
            found[f"{name} ({label})"] = rows
        page = client.get(reverse("dashboard", args=[slug]), query)
        assert page.status_code == 200 and b'id="runs-table"' in page.content
    trace = Trace.objects.filter(project=project).order_by("external_id")[len(names) // 2]
    chart = client.get(reverse("trace-score-chart", args=[slug, trace.pk])).content.decode()
    found["trace chart neighbours"] = [
        [names[int(pk)], direction]
        for pk, direction in re.findall(r'/traces/(\d+)/" class="(\w+)-disagreement"', chart)
    ]
    return found


def _figures(found):
    """A run's figures as comparable text: NaN is not equal to itself, and the splits
    come in the order of the rows (``pformat`` sorts them)."""
    return {pk: pformat({**asdict(f), "run": f.run.pk}, width=200) for pk, f in found.items()}


@pytest.mark.django_db
def test_the_python_path_equals_the_sql_path(tmp_path):
    project = build_project(tmp_path)
    score_runs = list(ScoringRun.objects.filter(project=project).order_by("id"))
    mc = MonteCarloRun.objects.get(project=project)
    label_set = project.label_sets.get(name="coarse-at-half")
    checked = 0
    for filters in (
        dashboards.Filters(),
        dashboards.Filters(split="gsm8k"),
        dashboards.Filters(generator="model-1"),
        dashboards.Filters(label_set=str(label_set.pk)),
    ):
        labels = dashboards.verdicts(project, filters)
        assert dashboards_portable.verdicts(project, filters) == labels
        assert len(labels) > 10
        for tau in (None, 0.3):
            sql = dashboards.runs_figures(score_runs, filters, tau)
            python = dashboards_portable.runs_figures(score_runs, filters, tau)
            assert _figures(python) == _figures(sql)
        for run in score_runs:
            sql_best = dashboards.best_of_n(run, filters)
            python_best = dashboards_portable.best_of_n(run, filters, None)
            assert python_best[0] == sql_best[0] > 5
            assert repr(python_best) == repr(sql_best)
            assert dashboards_portable.disagreements(
                run, filters, 1000
            ) == dashboards.disagreements(run, filters, limit=1000)
            checked += 1
        assert dashboards_portable.mc_disagreements(mc, filters, 1000) == (
            dashboards.mc_disagreements(mc, filters, limit=1000)
        )
    # The two runs differ, so the comparisons above could fail.
    figures = dashboards.runs_figures(score_runs)
    assert repr(figures[score_runs[0].pk].table) != repr(figures[score_runs[1].pk].table)
    traces = list(Trace.objects.filter(project=project).order_by("id"))
    for trace in traces[::9]:
        assert dashboards_portable.neighbour_disagreements(
            project, score_runs, trace.pk
        ) == dashboards.neighbour_disagreements(project, score_runs, trace.pk)
    assert dashboards_portable.labels_per_day(project) == dashboards.labels_per_day(project)
    assert checked == 8
    # Rows stored before the mean and log product were: both paths aggregate the steps.
    run = score_runs[0]
    TraceScore.objects.filter(run=run, trace__external_id__startswith="p1").update(mean_score=None)
    TraceScore.objects.filter(run=run, trace__external_id__startswith="p2").update(log_product=None)
    assert repr(dashboards_portable.best_of_n(run, dashboards.Filters(), None)) == repr(
        dashboards.best_of_n(run)
    )


SQLITE_CHECK = """
import json, sys
from pathlib import Path
from pprint import pformat
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from annotator import dashboards_portable
from tests.annotator.test_dashboard_portable import build_project, region_tables
assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
settings.ALLOWED_HOSTS = ["testserver"]
project = build_project(Path(sys.argv[1]))
client = Client()
client.force_login(get_user_model().objects.get(username="owen"))
tables = region_tables(client, project)
# Above the Python path's limit: a message naming it, and the regions answer 404.
dashboards_portable.MAX_TRACES = 10
page = client.get(f"/p/{project.slug}/dashboard/").content.decode()
region = client.get(f"/p/{project.slug}/dashboard/runs/")
print(json.dumps({"tables": tables, "page": page, "region": region.status_code}))
"""


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_every_region_shows_the_figures_postgresql_shows(tmp_path, sqlite_var, client):
    env = sqlite_env(sqlite_var)
    (tmp_path / "sqlite").mkdir()
    child = subprocess.run(
        [sys.executable, "-c", SQLITE_CHECK, str(tmp_path / "sqlite")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    on_sqlite = json.loads(child.stdout.splitlines()[-1])

    project = build_project(tmp_path)
    client.force_login(get_user_model().objects.get(username="owen"))
    on_postgresql = region_tables(client, project)
    assert set(on_sqlite["tables"]) == set(on_postgresql)
    for name, table in on_postgresql.items():
        assert on_sqlite["tables"][name] == table, name
    # The tables hold figures (a best-of-N column, ProcessBench rows, disagreements).
    assert len(on_postgresql["prm-fine best of N (all)"]) == 16
    assert len(on_postgresql["prm-fine figures (all)"]) == 5  # three splits and the average
    assert len(on_postgresql["prm-fine disagreements (all)"]) > 5
    assert len(on_postgresql["trace chart neighbours"]) == 4  # two runs, both directions

    assert "up to 10 traces" in on_sqlite["page"] and 'id="runs-table"' not in on_sqlite["page"]
    assert on_sqlite["region"] == 404
