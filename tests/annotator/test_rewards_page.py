"""The Rewards page: logged rollouts' returns per transform, right answers against the
PRM return, and the hacking suspects, each opening on the Label page; for members who
may see them, without hidden rollouts, in a bounded number of queries."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from annotator import charts, rollouts
from annotator.models import Membership, Project, Trace
from annotator.rollouts import log_rollouts
from tests.factories import rollout_records, sqlite_env

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _label(record: dict) -> str:
    return f"{record['transform']}/v{record['transform_version']}"


def _prm_return(record: dict) -> float:
    return record["return"] - (1.0 if record["success"] else 0.0)


@pytest.fixture
def logged(project):
    records = rollout_records(200)
    assert log_rollouts(project.slug, records) == 200
    return project, records


def _rows(project: Project, who: Membership):
    return rollouts.rollouts(Trace.objects.filter(project=project).visible_to(who))


def _urls(project: Project, query: str = "") -> list[str]:
    names = ("rewards", "rewards-charts", "rewards-suspects")
    return [reverse(name, args=[project.slug]) + query for name in names]


def test_the_returns_by_steps_are_the_rollouts_means(logged, users):
    project, records = logged
    owner = Membership.objects.get(project=project, user=users["owner"])
    series = rollouts.return_by_steps(_rows(project, owner))
    expected: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        expected[_label(r)][len(r["steps"])].append(_prm_return(r))
    assert set(series) == {"clip-delta/v1", "min/v1"}
    for label, points in series.items():
        assert [(x, n) for x, _, n in points] == [
            (steps, len(values)) for steps, values in sorted(expected[label].items())
        ]
        for (steps, value, _), (_, values) in zip(
            points, sorted(expected[label].items()), strict=True
        ):
            assert value == pytest.approx(mean(values)), (label, steps)


def test_the_right_answers_by_return_count_every_graded_rollout_once(logged, users):
    project, records = logged
    owner = Membership.objects.get(project=project, user=users["owner"])
    rows = _rows(project, owner)
    extent = rollouts.ranges(rows)
    assert extent.rollouts == 200
    assert extent.max_chars == max(len(r["response"]) for r in records)
    series = rollouts.success_by_return(rows, extent)
    for label, points in series.items():
        graded = [r for r in records if _label(r) == label and r["success"] is not None]
        assert sum(n for _, _, n in points) == len(graded)
        right = sum(share * n for _, share, n in points)
        assert right == pytest.approx(sum(r["success"] for r in graded))
        assert len(points) <= rollouts.RETURN_BINS
    by_length = rollouts.return_by_length(rows, extent)
    assert sum(n for points in by_length.values() for _, _, n in points) == 200
    centres = [x for points in by_length.values() for x, _, _ in points]
    assert min(centres) > 0 and max(centres) < extent.max_chars * (1 + 1 / rollouts.LENGTH_BINS)


def test_the_suspects_follow_their_rules(logged, users):
    project, records = logged
    owner = Membership.objects.get(project=project, user=users["owner"])
    failures, thresholds = rollouts.high_return_failures(_rows(project, owner))
    means = {
        label: mean(_prm_return(r) for r in records if _label(r) == label and r["success"])
        for label in {_label(r) for r in records}
    }
    assert thresholds == pytest.approx(means)
    expected = {
        r["key"] for r in records if r["success"] is False and _prm_return(r) >= means[_label(r)]
    }
    assert expected and {row["external_id"] for row in failures} == expected
    margins = [row["margin"] for row in failures]
    assert margins == sorted(margins, reverse=True)
    repeating = rollouts.repeating_rollouts(_rows(project, owner))
    assert {row["external_id"] for row in repeating} == {f"r{i}" for i in range(0, 200, 5)}


def test_the_page_shows_charts_and_suspects_linked_to_the_label_page(logged, client_for, users):
    project, records = logged
    client = client_for(users["owner"])
    page, charts, suspects = (client.get(url) for url in _urls(project))
    assert page.status_code == charts.status_code == suspects.status_code == 200
    assert b'<option value="clip-delta/v1"' in page.content and b"min/v1" in page.content
    assert reverse("rewards-charts", args=[project.slug]).encode() in page.content
    assert b"200 rollouts" in charts.content
    assert charts.content.count(b"Plotly.newPlot") == 3
    owner = Membership.objects.get(project=project, user=users["owner"])
    failures, _ = rollouts.high_return_failures(_rows(project, owner))
    r0 = Trace.objects.get(project=project, external_id="r0")  # repeats a step
    assert failures
    for trace_id in [r0.pk, *(row["id"] for row in failures)]:
        assert reverse("annotate-trace", args=[project.slug, trace_id]).encode() in (
            suspects.content
        )
    assert b"High PRM return, wrong answer" in suspects.content
    home = client.get(reverse("project", args=[project.slug]))
    assert reverse("rewards", args=[project.slug]).encode() in home.content


def test_the_filters_narrow_the_rollouts(logged, client_for, users):
    project, records = logged
    client = client_for(users["owner"])
    charts = client.get(_urls(project, "?transform=min/v1&step_from=2&step_to=4")[1])
    expected = [r for r in records if r["transform"] == "min" and 2 <= r["training_step"] <= 4]
    assert expected and f"{len(expected)} rollouts".encode() in charts.content
    suspects = client.get(_urls(project, "?transform=clip-delta/v1")[2])
    assert b"<td>clip-delta/v1</td>" in suspects.content
    assert b"min/v1" not in suspects.content
    for bad, field in (
        ("?transform=nope/v9", b"transform"),
        ("?step_from=-1", b"step_from"),
        ("?step_to=x", b"step_to"),
    ):
        for url in _urls(project, bad):
            response = client.get(url)
            assert response.status_code == 400 and field in response.content, url


def test_the_queries_do_not_grow_with_the_rollouts(project, client_for, users):
    client = client_for(users["owner"])
    counts = []
    for start, n in ((0, 20), (20, 400)):
        log_rollouts(project.slug, rollout_records(n, start=start))
        with CaptureQueriesContext(connection) as queries:
            for url in _urls(project):
                assert client.get(url).status_code == 200
        # Reads only; the savepoints and SET LOCALs of each partial's transaction aside.
        counts.append(sum(q["sql"].startswith("SELECT") for q in queries))
    assert counts[0] == counts[1] <= 20, counts


def test_it_is_for_members_who_see_model_scores(logged, client_for, users):
    project, _ = logged
    for url in _urls(project):
        assert client_for(users["outsider"]).get(url).status_code == 404
        # Annotators label blind to model scores unless the project shows them.
        assert client_for(users["annotator"]).get(url).status_code == 404
    client = client_for(users["annotator"])
    client.logout()
    for url in _urls(project):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response.url
    assert client.post(_urls(project)[0]).status_code in (302, 405)


def test_hidden_rollouts_and_answers_stay_hidden(logged, client_for, users):
    """An annotator of a project that shows model scores but hides reference answers:
    no reference rollout counted or listed, nothing that tells a right answer."""
    project, _ = logged
    project.show_model_scores = True
    project.show_reference_answer = False
    project.save()
    hidden = Trace.objects.get(project=project, external_id="r0")  # repeats a step
    Trace.objects.filter(pk=hidden.pk).update(generator="reference")
    client = client_for(users["annotator"])
    page, charts, suspects = (client.get(url) for url in _urls(project))
    assert page.status_code == 200
    assert b"199 rollouts" in charts.content
    assert charts.content.count(b"Plotly.newPlot") == 2  # no right answers by return
    assert b"Right answers" not in charts.content
    assert b"wrong answer" not in suspects.content
    r5 = Trace.objects.get(project=project, external_id="r5")  # repeats a step too
    assert reverse("annotate-trace", args=[project.slug, r5.pk]).encode() in suspects.content
    assert reverse("annotate-trace", args=[project.slug, hidden.pk]).encode() not in (
        suspects.content
    )
    # The reviewer sees it all.
    reviewer = client_for(users["reviewer"])
    assert b"200 rollouts" in reviewer.get(_urls(project)[1]).content


def test_the_api_shows_a_rollouts_rewards_only_to_who_may_see_them(logged, users):
    project, records = logged
    project.show_reference_answer = False
    project.save()
    trace = Trace.objects.get(project=project, external_id="r1")
    url = f"/api/v1/projects/{project.slug}/traces/{trace.pk}/"
    client = APIClient()
    client.force_authenticate(users["reviewer"])
    rollout = client.get(url).json()["metadata"]["rollout"]
    assert rollout["return"] == pytest.approx(records[1]["return"])
    assert "success" in rollout and "step_scores" in rollout
    client.force_authenticate(users["annotator"])
    rollout = client.get(url).json()["metadata"]["rollout"]
    assert rollout["transform"] == "clip-delta"
    for key in ("step_scores", "step_rewards", "return", "prm_return", "success"):
        assert key not in rollout
    project.show_model_scores = True
    project.save()
    rollout = client.get(url).json()["metadata"]["rollout"]
    assert rollout["step_scores"] == records[1]["step_scores"]
    assert "prm_return" in rollout
    for key in ("step_rewards", "return", "success"):  # they hold the graded answer
        assert key not in rollout


SQLITE_CHECK = """
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from annotator.models import Membership, Project, Role
from annotator.rollouts import log_rollouts
from tests.factories import rollout_records
assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
project = Project.objects.create(slug="rl", name="RL")
user = get_user_model().objects.create_user("owner")
Membership.objects.create(project=project, user=user, role=Role.OWNER)
records = rollout_records(60)
assert log_rollouts("rl", records) == 60
assert log_rollouts("rl", records) == 0
client = Client()
client.force_login(user)
for query in ("", "?transform=min/v1&step_from=1&step_to=2"):
    for url in ("/p/rl/rewards/", "/p/rl/rewards/charts/", "/p/rl/rewards/suspects/"):
        response = client.get(url + query)
        assert response.status_code == 200, (url, query, response.status_code)
charts = client.get("/p/rl/rewards/charts/").content.decode()
print("charts:", charts.count("Plotly.newPlot"), "60 rollouts" in charts)
suspects = client.get("/p/rl/rewards/suspects/").content.decode()
print("linked:", suspects.count("/p/rl/annotate/"))
"""


def test_the_page_renders_on_sqlite(sqlite_var):
    env = sqlite_env(sqlite_var)
    check = subprocess.run(
        [sys.executable, "-c", SQLITE_CHECK], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert "charts: 3 True" in check.stdout
    assert "linked: " in check.stdout and "linked: 0" not in check.stdout


def test_each_chart_draws_one_line_per_transform(logged, users):
    project, _ = logged
    owner = Membership.objects.get(project=project, user=users["owner"])
    rows = _rows(project, owner)
    extent = rollouts.ranges(rows)
    series = rollouts.return_by_steps(rows)
    fig = charts.return_by_steps(series)
    assert [line.name for line in fig.data] == ["clip-delta/v1", "min/v1"]
    for line, points in zip(fig.data, series.values(), strict=True):
        assert list(line.x) == [x for x, _, _ in points]
        assert list(line.y) == pytest.approx([y for _, y, _ in points])
        assert list(line.customdata) == [n for _, _, n in points]
    fig = charts.success_by_return(rollouts.success_by_return(rows, extent))
    assert len(fig.data) == 2 and tuple(fig.layout.yaxis.range) == (0, 1)
    assert all(0 <= y <= 1 for line in fig.data for y in line.y)
    by_length = rollouts.return_by_length(rows, extent)
    assert len(charts.return_by_length(by_length).data) == 2


def test_a_project_without_rollouts_says_how_to_log_them(project, client_for, users):
    client = client_for(users["owner"])
    page, charts, suspects = (client.get(url) for url in _urls(project))
    assert page.status_code == charts.status_code == suspects.status_code == 200
    assert b"serve_rewards --log-project gsm8k" in charts.content
    assert b"Plotly.newPlot" not in charts.content
    assert b"No rollout repeats a step" in suspects.content
    assert b"no rollout has a right answer yet" in suspects.content
