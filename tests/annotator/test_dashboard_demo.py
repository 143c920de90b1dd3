"""``setup_demo`` scores the demo project with ``arithmetic-check``, so a first visit
to the dashboard shows the ProcessBench GSM8K table, and the trace page its chart."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from annotator.models import JobStatus, Project, ScoringRun, StepScore, Trace

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_data_dir(data_dir, tmp_path):
    """The demo's two files, cut to 60 ProcessBench records and 10 problems' solutions."""
    (tmp_path / "processbench-gsm8k").mkdir()
    (tmp_path / "gsm8k").mkdir()
    records = json.loads((data_dir / "processbench-gsm8k" / "gsm8k.json").read_text())[:60]
    (tmp_path / "processbench-gsm8k" / "gsm8k.json").write_text(json.dumps(records))
    with open(data_dir / "gsm8k" / "example_model_solutions.jsonl") as fh:
        lines = [next(fh) for _ in range(10)]
    (tmp_path / "gsm8k" / "example_model_solutions.jsonl").write_text("".join(lines))
    return tmp_path


def test_setup_demo_scores_the_demo_and_the_dashboard_shows_gsm8k(small_data_dir, client):
    call_command("setup_demo", "--data-dir", str(small_data_dir), stdout=io.StringIO())
    project = Project.objects.get(slug="gsm8k-demo")
    run = ScoringRun.objects.get(project=project, name="arithmetic-check")
    assert run.status == JobStatus.DONE
    traces = Trace.objects.filter(project=project)
    assert StepScore.objects.filter(run=run).count() == sum(
        traces.values_list("num_steps", flat=True)
    )
    # Idempotent: a second call neither fails nor scores again.
    call_command("setup_demo", "--data-dir", str(small_data_dir), stdout=io.StringIO())
    assert ScoringRun.objects.filter(project=project).count() == 1

    client.force_login(get_user_model().objects.get(username="demo"))
    html = client.get(
        reverse("dashboard-run", args=[project.slug, run.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f'id="processbench-{run.pk}"' in html
    assert "<td>gsm8k</td>" in html
    assert html.count("Plotly.newPlot") == 5
    trace = traces.filter(split="gsm8k").first()
    page = client.get(reverse("trace", args=[project.slug, trace.pk])).content.decode()
    assert reverse("trace-score-chart", args=[project.slug, trace.pk]) in page
    chart = client.get(reverse("trace-score-chart", args=[project.slug, trace.pk])).content.decode()
    assert "Plotly.newPlot" in chart and "arithmetic-check" in chart
