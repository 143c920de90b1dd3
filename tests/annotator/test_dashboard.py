"""The project dashboard: every figure equals what ``python -m scoring evaluate`` prints
for the project's export, access, CSV downloads, partials and their charts."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re

import pytest
from django.urls import reverse

from annotator import charts, dashboards, exporting, labelsets, runs
from annotator.importing import import_file
from annotator.models import (
    Annotation,
    AnnotationKind,
    JobStatus,
    Project,
    ScoringRun,
    Trace,
)
from scoring.cli import main as scoring_main
from tests.factories import N_PROBLEMS, SOLUTIONS, dashboard_records, score_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_runs(project, users, tmp_path):
    """A project with 24 traces, imported labels, Stepwise annotators who agree and
    disagree, an adjudication, and two imported runs."""
    rng = random.Random(7)
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in dashboard_records(rng)) + "\n")
    import_file(project, path, "jsonl")
    traces = list(Trace.objects.filter(project=project).order_by("id"))
    # Two Stepwise annotators on a few traces: agreeing, disagreeing (no verdict), and a
    # disagreement settled by an adjudication.
    for trace, (a, b, adjudicated) in zip(
        traces[:4], [(0, 0, None), (-1, 0, None), (1, -1, 1), (-1, -1, None)], strict=False
    ):
        Annotation.objects.filter(trace=trace).delete()
        for user, label in ((users["annotator"], a), (users["reviewer"], b)):
            Annotation.objects.create(
                trace=trace, annotator=user, kind=AnnotationKind.LABEL, first_error_step=label
            )
        if adjudicated is not None:
            Annotation.objects.create(
                trace=trace,
                annotator=users["owner"],
                kind=AnnotationKind.ADJUDICATION,
                first_error_step=adjudicated,
            )
    made = []
    for name, with_nan in (("prm-a", False), ("prm-b", True)):
        made.append(
            runs.import_scores(
                project,
                io.BytesIO(score_file(traces, rng, with_nan=with_nan)),
                "scores.jsonl",
                name=name,
                user=users["owner"],
            )
        )
    return made


def _evaluate(project, tmp_path, capsys, *extra: str, labels: str = "human") -> str:
    """What ``python -m scoring evaluate --export`` prints for the project's export (with
    ``labels``: the human verdicts or a label set's name)."""
    out = tmp_path / "export.jsonl"
    score_runs = list(ScoringRun.objects.filter(project=project).order_by("id"))
    with open(out, "w") as fh:
        for record in exporting.iter_export(project, "jsonl", score_runs=score_runs, labels=labels):
            fh.write(json.dumps(record) + "\n")
    capsys.readouterr()
    assert scoring_main(["evaluate", "--export", str(out), *extra]) == 0
    return capsys.readouterr().out


def _cli_sections(text: str) -> dict[str, str]:
    return dict(re.findall(r"== run (\S+)\n(.*?)(?=\n== run |\Z)", text, flags=re.S))


def _cli_table(section: str) -> dict[str, list[str]]:
    rows = {}
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("split"))
    for line in lines[start + 1 :]:
        if line.startswith("best tau"):
            break
        parts = line.split()
        rows[parts[0]] = parts[1:]
    return rows


def _csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


def _nan(value: str) -> str:
    return "nan" if value == "" else value


def test_verdict_sql_equals_verdict_resolve(project, two_runs):
    verdicts = Annotation.objects.filter(trace__project=project).verdicts()
    expected = {pk: v.first_error_step for pk, v in verdicts.items() if v.is_labelled}
    assert dashboards.verdicts(project) == expected
    assert len(expected) >= 15  # the fixture holds labels, and one disagreement without
    assert len(expected) < Trace.objects.filter(project=project).count()


@pytest.mark.parametrize(("tau", "labels"), [("", "human"), ("0.4", "human"), ("", "label set")])
def test_every_figure_equals_scoring_evaluate(
    project, users, two_runs, tmp_path, capsys, client_for, tau, labels
):
    """With the human verdicts, or with a label set (the filter "label set"): prm-b's
    first errors at 0.4, which prm-a's figures are then compared with."""
    query = {"tau": tau} if tau else {}
    name = "human"
    if labels == "label set":
        name = "prm-b-at-0-4"
        made = labelsets.create_label_set(
            project, name, "scoring", {"run": "prm-b", "threshold": 0.4}
        )
        query["label_set"] = made.pk
    threshold = tau or "0.5"
    sections = _cli_sections(
        _evaluate(project, tmp_path, capsys, "--threshold", threshold, labels=name)
    )
    client = client_for(users["reviewer"])
    runs_rows = _csv_rows(
        client.get(reverse("dashboard-runs", args=[project.slug]), {**query, "format": "csv"})
    )
    by_name = {row[0]: row for row in runs_rows[1:]}
    for run in two_runs:
        section = sections[run.name]
        cli = _cli_table(section)
        # The ProcessBench table per split with AUROC and min-on-final.
        rows = _csv_rows(
            client.get(
                reverse("dashboard-run", args=[project.slug, run.pk]), {**query, "format": "csv"}
            )
        )
        assert rows[0] == [
            "split",
            "n_err",
            "n_cor",
            "acc_err",
            "acc_cor",
            "F1",
            "AUROC",
            "min@last",
        ]
        app = {}
        for row in rows[1:]:
            cells = row[1:6] if row[0] == "average" else row[1:]  # no AUROC for an average
            app[row[0]] = [_nan(cell) for cell in cells]
        assert set(app) == set(cli) == {"gsm8k", "math", "average"}
        for split in cli:
            assert app[split] == cli[split], (run.name, split)
        # Best tau and its F1 over every labelled trace.
        best_tau, best_f1 = re.search(
            r"best tau over all splits: (\S+) \(F1 (\S+)\)", section
        ).groups()
        assert by_name[run.name][6:8] == [best_tau, best_f1]
        # Best-of-N per rule.
        bon = dict(
            re.findall(
                r"^(bon_\w+|weighted_vote_\w+|maj|pass|wrong_process_\w+)\s+(\S+)$", section, re.M
            )
        )
        assert len(bon) == 14
        bon_query = {
            "format": "csv",
            **({"label_set": query["label_set"]} if name != "human" else {}),
        }
        # The run's own partial (the page's table), and its column of the all-runs CSV.
        run_rows = _csv_rows(
            client.get(reverse("dashboard-run-best-of-n", args=[project.slug, run.pk]), bon_query)
        )
        assert run_rows[0] == ["rule", run.name]
        app_bon = {row[0]: _nan(row[1]) for row in run_rows[1:]}
        assert app_bon.pop("problems") == str(N_PROBLEMS)
        assert app_bon == bon
        bon_rows = _csv_rows(
            client.get(reverse("dashboard-best-of-n", args=[project.slug]), bon_query)
        )
        column = bon_rows[0].index(run.name)
        assert [[row[0], row[column]] for row in bon_rows] == run_rows


def test_the_label_set_filter_compares_the_runs_with_the_sets_labels(
    project, users, two_runs, client_for
):
    """A set of prm-a's own first errors at its threshold: against it prm-a is right on
    every trace, which it is not against the humans."""
    run = two_runs[0]
    made = labelsets.create_label_set(project, "prm-a-own", "scoring", {"run": "prm-a"})
    client = client_for(users["reviewer"])
    url = reverse("dashboard-run", args=[project.slug, run.pk])
    own = _csv_rows(client.get(url, {"format": "csv", "label_set": made.pk}))
    human = _csv_rows(client.get(url, {"format": "csv"}))
    average = {row[0]: row for row in own[1:]}["average"]
    assert int(average[1]) + int(average[2]) == Trace.objects.filter(project=project).count()
    assert average[3:6] == ["100.0", "100.0", "100.0"]
    assert {row[0]: row for row in human[1:]}["average"][3:6] != average[3:6]
    page = client.get(reverse("dashboard", args=[project.slug]), {"label_set": made.pk})
    assert (
        f'<option value="{made.pk}" selected>label set prm-a-own</option>' in page.content.decode()
    )
    # Another project's label set is not found.
    other_project = Project.objects.create(slug="other", name="Other")
    elsewhere = labelsets.create_label_set(other_project, "theirs", "human")
    assert client.get(url, {"label_set": elsewhere.pk}).status_code == 404


def test_best_of_n_reads_stored_aggregates_and_falls_back_to_the_steps(project, two_runs):
    """Rows stored before ``mean_score``/``log_product`` existed hold nulls: best-of-N
    then aggregates those traces' steps and finds the same figures."""
    from annotator.models import TraceScore
    from scoring import metrics

    run = two_runs[1]  # the run with a NaN score
    for row in TraceScore.objects.filter(run=run).select_related("trace"):
        scores = runs.scores_by_trace([run], row.trace)[run.pk]
        expected = metrics.solution_aggregates(scores)
        assert math.isclose(row.mean_score, expected["mean"], rel_tol=1e-12)
        assert math.isclose(math.exp(row.log_product), expected["product"], rel_tol=1e-12)
    stored = dashboards.best_of_n(run)
    TraceScore.objects.filter(run=run, trace__external_id__startswith="p1-").update(mean_score=None)
    TraceScore.objects.filter(run=run, trace__external_id__startswith="p2-").update(
        log_product=None
    )
    assert dashboards.best_of_n(run) == stored
    assert stored[0] == N_PROBLEMS


def test_reference_traces_are_no_best_of_n_candidates(project, two_runs, tmp_path, capsys):
    """A reference solution (correct by definition) among a problem's candidates made pass
    and majority 100: best-of-N, in the database and in ``scoring evaluate`` alike, counts
    the model solutions only, as if the reference traces had no scores."""
    from annotator.models import StepScore, TraceScore

    references = []
    seen = set()
    for trace in Trace.objects.filter(project=project).order_by("problem_id", "id"):
        if trace.problem_id not in seen:
            seen.add(trace.problem_id)
            references.append(trace.pk)
    # Each reference is right and scored highest by every rule: picked wherever counted.
    Trace.objects.filter(pk__in=references).update(generator="reference", final_answer_correct=True)
    TraceScore.objects.filter(trace__in=references).update(
        min_score=1.0, last_score=1.0, mean_score=1.0, log_product=0.0
    )
    StepScore.objects.filter(trace__in=references).update(score=1.0)
    sections = _cli_sections(_evaluate(project, tmp_path, capsys))
    with_references = {run.pk: dashboards.best_of_n(run) for run in two_runs}
    for run in two_runs:
        cli = dict(re.findall(r"^(bon_\w+|maj|pass)\s+(\S+)$", sections[run.name], re.M))
        problems, table = with_references[run.pk]
        assert cli and all(cli[key] == f"{table[key]:.1f}" for key in cli), run.name
    StepScore.objects.filter(trace__in=references).delete()
    TraceScore.objects.filter(trace__in=references).delete()
    assert {run.pk: dashboards.best_of_n(run) for run in two_runs} == with_references


def test_an_undefined_figure_reads_the_same_on_the_dashboard_and_the_run_page(
    project, users, two_runs, client_for
):
    """A split with no erroneous trace has no accuracy on erroneous and no F1: the run
    page said "nan", the dashboard left the cell blank. Both now show "—" with a title,
    and the note under each table explains it; the CSV keeps an empty cell."""
    from django.core.cache import cache

    Annotation.objects.filter(trace__project=project, trace__split="math").update(
        first_error_step=-1
    )
    cache.clear()
    client = client_for(users["reviewer"])
    run = two_runs[0]
    pages = {
        "dashboard": client.get(reverse("dashboard-run", args=[project.slug, run.pk])),
        "run page": client.get(reverse("run", args=[project.slug, run.pk])),
    }
    for where, page in pages.items():
        html = page.content.decode()
        row = re.search(r"<tr><td>math</td>(.*?)</tr>", html, re.S).group(1)
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
        undefined = re.findall(r'<td class="undefined" title="([^"]+)">—</td>', row)
        assert len(undefined) >= 2 and "nan" not in cells, (where, row)  # acc_err, F1 (+ AUROC)
        assert "see the note" in undefined[0]
        assert "—: not defined (a split with no erroneous trace" in html, where
    rows = _csv_rows(
        client.get(reverse("dashboard-run", args=[project.slug, run.pk]), {"format": "csv"})
    )
    [math_row] = [row for row in rows if row[0] == "math"]
    assert math_row[3] == "" and math_row[5] == ""


def test_the_dashboard_tables_have_readable_headers_a_legend_and_one_unit(
    project, users, two_runs, client_for
):
    """Headers were identifiers (``acc_err``, ``min@last``) and the table said "in
    percent" beside AUROC fractions: every rate on the page is in percent now."""
    client = client_for(users["reviewer"])
    run = two_runs[0]
    html = client.get(reverse("dashboard-run", args=[project.slug, run.pk])).content.decode()
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", html)
    assert headers[:8] == [
        "Split",
        "Erroneous",
        "Correct",
        "Acc. on erroneous",
        "Acc. on correct",
        "F1",
        "Step AUROC",
        "Lowest on last step",
    ]
    assert "<dt>Acc. on erroneous</dt>" in html  # the legend
    csv_rows = _csv_rows(
        client.get(reverse("dashboard-run", args=[project.slug, run.pk]), {"format": "csv"})
    )
    [csv_gsm8k] = [row for row in csv_rows if row[0] == "gsm8k"]
    page_gsm8k = re.findall(
        r"<td>([^<]*)</td>", re.search(r"<tr><td>gsm8k</td>.*?</tr>", html).group()
    )
    assert float(page_gsm8k[6]) == pytest.approx(float(csv_gsm8k[6]) * 100, abs=0.051)
    runs_html = client.get(reverse("dashboard-runs", args=[project.slug])).content.decode()
    assert "acc_err" not in runs_html and "min on final step" not in runs_html
    assert "Every rate in percent" in runs_html


def test_each_trace_row_keeps_its_step_scores_in_order(project, two_runs):
    """``store_scores`` writes the scores beside the steps (NaN kept), which is what the
    dashboard's figures read."""
    from annotator.models import TraceScore

    rows = TraceScore.objects.filter(run__in=two_runs).select_related("trace", "run")
    seen_nan = False
    for row in rows:
        expected = runs.scores_by_trace([row.run], row.trace)[row.run_id]
        assert len(row.step_scores) == row.trace.num_steps == len(expected)
        for stored, step in zip(row.step_scores, expected, strict=True):
            seen_nan |= math.isnan(step)
            assert stored == step or (math.isnan(stored) and math.isnan(step))
    assert seen_nan  # prm-b has one


def _figures_csv(client, project, two_runs, query=None) -> list[list[list[str]]]:
    """The runs table, each run's ProcessBench table and best-of-N, as CSV rows."""
    query = {**(query or {}), "format": "csv"}
    urls = [
        reverse("dashboard-runs", args=[project.slug]),
        *(reverse("dashboard-run", args=[project.slug, run.pk]) for run in two_runs),
        reverse("dashboard-best-of-n", args=[project.slug]),
        *(reverse("dashboard-run-best-of-n", args=[project.slug, run.pk]) for run in two_runs),
    ]
    return [_csv_rows(client.get(url, query)) for url in urls]


@pytest.mark.parametrize("tau", ["", "0.4"])
def test_rows_stored_before_the_step_scores_column_show_the_same_figures(
    project, users, two_runs, client_for, tau
):
    """A run stored before ``TraceScore.step_scores`` existed has nulls there: its
    figures come from its StepScore rows and are the same, for some rows or all."""
    from django.core.cache import cache

    from annotator.models import TraceScore

    client = client_for(users["reviewer"])
    query = {"tau": tau} if tau else {}
    stored = _figures_csv(client, project, two_runs, query)
    nulled = TraceScore.objects.filter(run=two_runs[1], trace__external_id__startswith="p1-")
    assert nulled.update(step_scores=None) == SOLUTIONS
    cache.clear()
    assert _figures_csv(client, project, two_runs, query) == stored
    TraceScore.objects.filter(run__in=two_runs).update(step_scores=None)
    cache.clear()
    assert _figures_csv(client, project, two_runs, query) == stored


def test_the_migration_fills_the_step_scores_of_older_rows(project, two_runs):
    import importlib

    from django.db import connection

    from annotator.models import TraceScore

    migration = importlib.import_module("annotator.migrations.0011_tracescore_step_scores")
    before = {row.pk: row.step_scores for row in TraceScore.objects.all()}
    TraceScore.objects.update(step_scores=None)
    with connection.schema_editor() as editor:
        migration.fill_step_scores(None, editor)
    after = {row.pk: row.step_scores for row in TraceScore.objects.all()}
    assert after.keys() == before.keys()
    for pk, scores in before.items():
        assert len(after[pk]) == len(scores)
        assert all(
            a == b or (math.isnan(a) and math.isnan(b))
            for a, b in zip(after[pk], scores, strict=True)
        )


def test_the_runs_table_shows_the_mean_of_the_splits_auroc(project, users, two_runs, client_for):
    """Each split's AUROC equals ``evaluate``'s (above); the runs table averages them as
    ProcessBench averages F1 over splits."""
    client = client_for(users["reviewer"])
    table = _csv_rows(client.get(reverse("dashboard-runs", args=[project.slug]), {"format": "csv"}))
    assert table[0][8] == "step AUROC (mean of splits)"
    by_name = {row[0]: row for row in table[1:]}
    for run in two_runs:
        rows = _csv_rows(
            client.get(reverse("dashboard-run", args=[project.slug, run.pk]), {"format": "csv"})
        )
        per_split = [float(row[6]) for row in rows[1:] if row[0] != "average"]
        assert len(per_split) == 2
        assert abs(float(by_name[run.name][8]) - sum(per_split) / 2) <= 0.0011


def test_one_query_for_several_runs_equals_one_run_at_a_time(project, two_runs):
    together = dashboards.runs_figures(two_runs)
    best_together = dashboards.runs_best_of_n(two_runs)
    for run in two_runs:
        alone = dashboards.run_figures(run)
        # repr: NaN (an F1 over no traces) is not equal to itself
        assert repr(together[run.pk].table) == repr(alone.table)
        assert repr(together[run.pk].auroc) == repr(alone.auroc)
        assert together[run.pk].histogram == alone.histogram
        assert together[run.pk].labelled == alone.labelled > 0
        assert best_together[run.pk] == dashboards.best_of_n(run)
    assert repr(together[two_runs[0].pk].table) != repr(together[two_runs[1].pk].table)


def test_the_runs_differ_so_the_comparison_can_fail(project, two_runs, tmp_path, capsys):
    sections = _cli_sections(_evaluate(project, tmp_path, capsys))
    assert _cli_table(sections["prm-a"]) != _cli_table(sections["prm-b"])


def test_the_human_ceiling_row_compares_annotators(project, users, two_runs, client_for):
    rows = _csv_rows(
        client_for(users["owner"]).get(
            reverse("dashboard-runs", args=[project.slug]), {"format": "csv"}
        )
    )
    human = rows[-1]
    # Ordered pairs on the 4 doubly labelled traces: (0,0) x2 right, (-1,0) and (0,-1),
    # (1,-1) and (-1,1), (-1,-1) x2 right: erroneous labels 4 (2 right), correct 4 (2 right).
    assert human[0] == "humans: one person's first error against another's (8 ordered pairs)"
    assert human[1] == "4"  # traces, not pairs
    assert human[3:6] == ["50.0", "50.0", "50.0"]


def test_the_humans_row_counts_the_traces_the_agreement_page_compares(
    project, users, two_runs, client_for
):
    client = client_for(users["owner"])
    human = _csv_rows(
        client.get(reverse("dashboard-runs", args=[project.slug]), {"format": "csv"})
    )[-1]
    page = client.get(reverse("agreement", args=[project.slug])).content.decode()
    assert f"Over the {human[1]} traces labelled by two or more people" in page
    assert re.search(r'id="exact-agreement">0\.500<.*2 of 4 pairs', page, flags=re.S)


def test_it_checks_membership_and_role(project, users, two_runs, client_for):
    run = two_runs[0]
    urls = [
        reverse("dashboard", args=[project.slug]),
        reverse("dashboard-runs", args=[project.slug]),
        reverse("dashboard-run", args=[project.slug, run.pk]),
        reverse("dashboard-best-of-n", args=[project.slug]),
        reverse("dashboard-run-best-of-n", args=[project.slug, run.pk]),
        reverse("dashboard-annotation", args=[project.slug]),
        reverse("dashboard-disagreements", args=[project.slug, run.pk]),
    ]
    for who, status in (("outsider", 404), ("annotator", 404), ("reviewer", 200)):
        client = client_for(users[who])
        for url in urls:
            assert client.get(url).status_code == status, (who, url)
    client.logout()
    assert client.get(urls[0]).status_code == 302


def test_the_page_loads_each_region_as_a_partial(project, users, two_runs, client_for):
    page = client_for(users["reviewer"]).get(reverse("dashboard", args=[project.slug]))
    html = page.content.decode()
    assert "vendor/plotly/plotly.min.js" in html
    assert "cdn" not in html.lower()
    for run in two_runs:
        assert f'hx-get="{reverse("dashboard-run", args=[project.slug, run.pk])}' in html
        # Best-of-N: one partial per run, loaded side by side.
        assert f'hx-get="{reverse("dashboard-run-best-of-n", args=[project.slug, run.pk])}' in html
    assert f'hx-get="{reverse("dashboard-best-of-n", args=[project.slug])}' not in html
    assert 'hx-trigger="load, retry"' in html  # retry: a failed region's Retry button
    # The page itself computes no figure: no chart markup before the partials load.
    assert "Plotly.newPlot" not in html


def test_the_run_partial_holds_charts_with_data(project, users, two_runs, client_for):
    run = two_runs[0]
    html = (
        client_for(users["reviewer"])
        .get(reverse("dashboard-run", args=[project.slug, run.pk]), HTTP_HX_REQUEST="true")
        .content.decode()
    )
    for name in ("histogram", "sweep", "roc", "calibration", "confusion"):
        assert f'id="{name}-{run.pk}"' in html
    assert html.count("Plotly.newPlot") == 5
    assert f'id="processbench-{run.pk}"' in html


def test_the_figures_follow_the_filters(project, users, two_runs, client_for):
    client = client_for(users["reviewer"])
    rows = _csv_rows(
        client.get(
            reverse("dashboard-run", args=[project.slug, two_runs[0].pk]),
            {"split": "gsm8k", "format": "csv"},
        )
    )
    assert [row[0] for row in rows[1:]] == ["gsm8k", "average"]


def test_disagreements_are_the_traces_where_the_run_differs(project, users, two_runs, client_for):
    run = two_runs[0]
    verdicts = dashboards.verdicts(project)
    rows = dashboards.disagreements(run, limit=1000)
    predicted = dict(run.trace_scores.values_list("trace_id", "predicted_first_error"))
    expected = {t for t, label in verdicts.items() if predicted[t] != label}
    assert {row[0] for row in rows} == expected
    strengths = [row[4] for row in rows]
    assert strengths == sorted(strengths, reverse=True)
    html = (
        client_for(users["reviewer"])
        .get(reverse("dashboard-disagreements", args=[project.slug, run.pk]))
        .content.decode()
    )
    first = rows[0][0]
    assert reverse("trace", args=[project.slug, first]) in html


def test_disagreements_of_rows_stored_before_the_step_scores_column_are_the_same(project, two_runs):
    """A miss's strength is the score at the human first error: from the trace's array,
    or from its StepScore rows where the array is null (a run stored before it)."""
    from annotator.models import TraceScore

    run = two_runs[0]
    stored = dashboards.disagreements(run, limit=1000)
    misses = [r for r in stored if r[2] != -1 and (r[3] == -1 or r[3] > r[2])]
    assert misses  # rows whose strength reads the score at the human first error
    assert TraceScore.objects.filter(run=run).update(step_scores=None)
    assert dashboards.disagreements(run, limit=1000) == stored


def test_run_vs_run_disagreements_list_where_the_predictions_differ(
    project, users, two_runs, client_for
):
    a, b = two_runs
    rows = dashboards.run_pair_disagreements(a, b, limit=1000)
    first_a = dict(a.trace_scores.values_list("trace_id", "predicted_first_error"))
    first_b = dict(b.trace_scores.values_list("trace_id", "predicted_first_error"))
    assert {row[0] for row in rows} == {t for t in first_a if first_a[t] != first_b[t]}
    assert rows and all((first_a[t], first_b[t]) == (x, y) for t, _, x, y, _ in rows)
    apart = [row[4] for row in rows]
    assert apart == sorted(apart, reverse=True) and min(apart) > 0
    client = client_for(users["reviewer"])
    url = reverse("dashboard-disagreements", args=[project.slug, a.pk])
    html = client.get(url, {"against": b.pk}).content.decode()
    assert reverse("trace", args=[project.slug, rows[0][0]]) in html and b.name in html
    csv_rows = _csv_rows(client.get(url, {"against": b.pk, "format": "csv"}))
    assert len(csv_rows) == 1 + len(rows)
    # Another project's run, or a bad id, is not found; annotators see no list.
    assert client.get(url, {"against": "x"}).status_code == 404
    assert client_for(users["annotator"]).get(url, {"against": b.pk}).status_code in (403, 404)


def test_monte_carlo_disagreements_list_where_mc_differs_from_the_humans(
    project, users, two_runs, client_for
):
    from annotator.models import JobStatus, MonteCarloRun, TraceMC

    mc = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:1", status=JobStatus.DONE
    )
    verdicts = dashboards.verdicts(project)
    traces = {t.pk: t for t in Trace.objects.filter(project=project)}
    # MC agrees on every other labelled trace; elsewhere it says "all correct".
    for k, (trace_id, label) in enumerate(sorted(verdicts.items())):
        TraceMC.objects.create(run=mc, trace_id=trace_id, first_error=label if k % 2 else -1)
    expected = {
        t for k, (t, label) in enumerate(sorted(verdicts.items())) if k % 2 == 0 and label != -1
    }
    rows = dashboards.mc_disagreements(mc, limit=1000)
    assert expected and {row[0] for row in rows} == expected
    assert all(row[4] == traces[row[0]].num_steps - row[2] for row in rows)
    url = reverse("dashboard-mc-disagreements", args=[project.slug, mc.pk])
    html = client_for(users["reviewer"]).get(url).content.decode()
    assert reverse("trace", args=[project.slug, rows[0][0]]) in html
    page = client_for(users["reviewer"]).get(reverse("dashboard", args=[project.slug]))
    assert url in page.content.decode()
    assert client_for(users["annotator"]).get(url).status_code in (403, 404)


def test_csv_downloads_of_every_table(project, users, two_runs, client_for):
    client = client_for(users["reviewer"])
    for name, args in (
        ("dashboard-runs", [project.slug]),
        ("dashboard-run", [project.slug, two_runs[0].pk]),
        ("dashboard-best-of-n", [project.slug]),
        ("dashboard-run-best-of-n", [project.slug, two_runs[0].pk]),
        ("dashboard-annotation", [project.slug]),
        ("dashboard-disagreements", [project.slug, two_runs[0].pk]),
    ):
        rows = _csv_rows(client.get(reverse(name, args=args), {"format": "csv"}))
        assert len(rows) >= 2, name


def test_a_runs_best_of_n_partial_is_its_runs_alone(project, users, two_runs, client_for):
    """Each run's partial holds that run's column and nothing of the other's; a run that is
    not finished, or of another project, is not found."""
    client = client_for(users["reviewer"])
    tables = {}
    for run in two_runs:
        url = reverse("dashboard-run-best-of-n", args=[project.slug, run.pk])
        tables[run.name] = _csv_rows(client.get(url, {"format": "csv"}))
        html = client.get(url).content.decode()
        assert f'id="best-of-n-{run.pk}"' in html and "<table" in html
        assert run.name in html
        assert all(other.name not in html for other in two_runs if other != run)
    assert tables["prm-a"][1:] != tables["prm-b"][1:]
    other = Project.objects.create(slug="elsewhere", name="Elsewhere")
    stranger = ScoringRun.objects.create(project=other, name="x", status=JobStatus.DONE)
    running = ScoringRun.objects.create(project=project, name="y", status=JobStatus.RUNNING)
    for run in (stranger, running):
        url = reverse("dashboard-run-best-of-n", args=[project.slug, run.pk])
        assert client.get(url).status_code == 404


def test_warm_fills_what_each_runs_best_of_n_partial_reads(project, users, two_runs, client_for):
    """After a run's ``dashboards.warm`` its best-of-N partial reads no score."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(users["reviewer"])
    run = two_runs[0]
    url = reverse("dashboard-run-best-of-n", args=[project.slug, run.pk])

    def score_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return sum("annotator_tracescore" in q["sql"] for q in queries.captured_queries)

    cache.clear()
    assert score_queries() > 0  # cold: it computes
    cache.clear()
    dashboards.warm(run)
    assert score_queries() == 0


@pytest.mark.parametrize("tau", ["nan", "abc", "7", "-0.1", "inf"])
@pytest.mark.parametrize("page", ["dashboard", "dashboard-runs", "dashboard-run"])
def test_a_bad_tau_is_400_with_the_field_named(project, users, two_runs, client_for, tau, page):
    """A non-number, or a threshold outside [0, 1], is the user's mistake: 400 naming
    ``tau``, on the page itself and on its partials, never a 404 or a silent accept."""
    args = [project.slug, two_runs[0].pk] if page == "dashboard-run" else [project.slug]
    response = client_for(users["reviewer"]).get(reverse(page, args=args), {"tau": tau})
    assert response.status_code == 400
    assert response.content.decode().startswith("tau ")


@pytest.mark.parametrize("tau", ["0", "1", "0.5"])
def test_tau_at_the_ends_of_zero_to_one_is_accepted(project, users, two_runs, client_for, tau):
    response = client_for(users["reviewer"]).get(
        reverse("dashboard-runs", args=[project.slug]), {"tau": tau}
    )
    assert response.status_code == 200


# -- charts: pure functions, asserted on fig.data -------------------------------------------


def test_score_histogram_has_a_series_per_class():
    fig = charts.score_histogram({"correct": [1, 2, 3, 4], "first error": [4, 0, 0, 0]})
    assert [trace.name for trace in fig.data] == ["correct", "first error"]
    assert list(fig.data[0].y) == [1, 2, 3, 4]
    assert list(fig.data[0].x) == [0.125, 0.375, 0.625, 0.875]
    assert fig.layout.xaxis2.title.text == "step score" and fig.layout.yaxis.title.text


def test_score_histogram_gives_each_class_its_own_panel_in_an_opaque_colour():
    """Overlaid translucent bars mixed into brown, and the rare first-error class was a
    sliver on the correct steps' count axis: one panel per class, own count axis."""
    fig = charts.score_histogram(
        {
            "correct": [500, 900, 2000, 4000],
            "first error": [9, 3, 1, 0],
            "after first error": [5, 5, 2, 1],
        }
    )
    assert fig.layout.barmode != "overlay"
    assert [trace.yaxis for trace in fig.data] == ["y", "y2", "y3"]  # one count axis each
    assert all(trace.opacity in (None, 1) for trace in fig.data)
    colours = [trace.marker.color for trace in fig.data]
    assert len(set(colours)) == 3
    assert [a.text for a in fig.layout.annotations] == [
        "correct",
        "first error",
        "after first error",
    ]


def test_the_trace_chart_runs_zero_to_one_whatever_the_scores():
    fig = charts.trace_scores({"a": [1.0, 1.0, 1.0]}, None)
    assert tuple(fig.layout.yaxis.range) == (0, 1)  # autoscaled, all-1 scores drew 0-2


def test_the_training_curve_keeps_f1_on_zero_to_a_hundred():
    fig = charts.training_curve({"loss": [(1, 0.7), (2, 0.5)], "eval_f1": [(2, 0.0), (4, None)]})
    assert [trace.name for trace in fig.data] == ["training loss", "held-out F1"]
    assert fig.data[1].yaxis == "y2" and list(fig.data[1].y) == [0.0, None]
    assert tuple(fig.layout.yaxis2.range) == (0, 100)  # autoscaled: -0.89 to 0.91


def test_threshold_sweep_marks_the_best_tau():
    fig = charts.threshold_sweep([0.1, 0.5], [10.0, 60.0], [90.0, 50.0], [18.0, float("nan")], 0.1)
    assert [trace.name for trace in fig.data] == [
        "accuracy on erroneous",
        "accuracy on correct",
        "F1",
    ]
    assert list(fig.data[2].y) == [18.0, None]  # NaN is a gap, not invalid JSON
    assert fig.layout.shapes[0].x0 == 0.1
    assert fig.layout.legend.y > 1  # above the plot, not over the data


def test_roc_and_calibration_and_confusion_and_trace_charts():
    roc = charts.roc_curve([0, 0.5, 1], [0, 0.8, 1], 0.75)
    assert list(roc.data[1].y) == [0, 0.8, 1] and "0.750" in roc.data[1].name
    calibration = charts.calibration_curve([(0.25, 0.1, 10), (0.75, 0.9, 20)])
    assert list(calibration.data[1].x) == [0.25, 0.75]
    confusion = charts.first_error_confusion({"earlier": 2, "exact": 5})
    assert list(confusion.data[0].y) == [2, 5]
    trace = charts.trace_scores({"a": [0.9, 0.1], "b": [0.5, float("nan")]}, 1)
    assert [t.name for t in trace.data] == ["a", "b"] and list(trace.data[1].y) == [0.5, None]
    assert trace.layout.shapes[0].x0 == 1


def test_the_trace_chart_links_the_neighbouring_disagreements(project, users, two_runs, client_for):
    run = two_runs[0]
    verdicts = dashboards.verdicts(project)
    predicted = dict(run.trace_scores.values_list("trace_id", "predicted_first_error"))
    differing = sorted(t for t, label in verdicts.items() if predicted[t] != label)
    middle = differing[len(differing) // 2]
    url = reverse("trace-score-chart", args=[project.slug, middle])
    html = client_for(users["reviewer"]).get(url).content.decode()
    assert 'id="trace-score-chart-plot"' in html
    previous = differing[differing.index(middle) - 1]
    following = differing[differing.index(middle) + 1]
    assert (
        f'href="{reverse("trace", args=[project.slug, previous])}" class="previous-disagreement" data-run="{run.name}"'
        in html
    )
    assert (
        f'href="{reverse("trace", args=[project.slug, following])}" class="next-disagreement" data-run="{run.name}"'
        in html
    )


def test_annotators_see_the_trace_chart_only_where_the_project_shows_scores(
    project, users, two_runs, client_for
):
    trace = Trace.objects.filter(project=project).first()
    url = reverse("trace-score-chart", args=[project.slug, trace.pk])
    client = client_for(users["annotator"])
    assert client.get(url).status_code == 404
    project.show_model_scores = True
    project.save()
    html = client.get(url).content.decode()
    assert "Plotly.newPlot" in html
    # Blind to other people's labels: no disagreement navigation for annotators.
    assert "disagreement" not in html


def test_cached_figures_follow_new_labels(project, users, two_runs, client_for):
    client = client_for(users["reviewer"])
    url = reverse("dashboard-runs", args=[project.slug])

    def labelled() -> dict[str, str]:
        return {row[0]: row[1] for row in _csv_rows(client.get(url, {"format": "csv"}))[1:]}

    before = labelled()
    assert labelled() == before  # served again (from the cache)
    unlabelled = Trace.objects.filter(project=project).exclude(pk__in=dashboards.verdicts(project))
    trace = unlabelled.exclude(annotations__isnull=False).first()
    Annotation.objects.create(
        trace=trace, annotator=users["annotator"], kind=AnnotationKind.LABEL, first_error_step=-1
    )
    after = labelled()
    for run in two_runs:
        assert int(after[run.name]) == int(before[run.name]) + 1


def test_the_trace_chart_plots_each_runs_stored_scores(project, users, two_runs, client_for):
    trace = Trace.objects.filter(project=project).order_by("id").first()
    html = (
        client_for(users["reviewer"])
        .get(reverse("trace-score-chart", args=[project.slug, trace.pk]))
        .content.decode()
    )
    data = json.loads(
        re.search(r'newPlot\(\s*"trace-score-chart-plot",\s*(\[.*?\]),\s*\{', html).group(1)
    )
    for run, series in zip(two_runs, data, strict=True):
        stored = run_scores(run, trace)
        assert series["name"] == run.name
        assert series["y"] == [None if s != s else s for s in stored]


def run_scores(run, trace) -> list[float]:
    from annotator.models import StepScore

    return list(
        StepScore.objects.filter(run=run, trace=trace)
        .order_by("step_index")
        .values_list("score", flat=True)
    )


def test_labels_per_day_counts_the_labels_given_here_not_the_imported_ones(
    project, users, two_runs, client_for
):
    # The fixture imports labels for all 24 traces (by ``import-jsonl``) and has two
    # Stepwise annotators label four of them: 8 labels given here, adjudications aside.
    assert Annotation.objects.filter(annotator__username="import-jsonl").exists()
    rows = _csv_rows(
        client_for(users["owner"]).get(
            reverse("dashboard-annotation", args=[project.slug]), {"format": "csv"}
        )
    )
    assert sum(int(n) for _, n in rows[1:]) == 8
