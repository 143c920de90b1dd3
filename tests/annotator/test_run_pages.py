"""The scoring pages: runs, one run, scorers, importing scores, and the score cells
beside the labels on the trace, Label and review pages. (A run through a real worker
in the browser: tests/browser/test_scoring_run.py.)"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotator import jobs, runs
from annotator.importing import import_file
from annotator.models import (
    Annotation,
    JobStatus,
    ScoreImportJob,
    Scorer,
    ScoringRun,
    StepScore,
    Trace,
    Verdict,
)
from scoring import metrics
from scoring.types import NO_PREDICTION
from tests.factories import PROCESSBENCH_GSM8K

pytestmark = pytest.mark.django_db

POLLING = b'hx-trigger="every 1s"'


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


@pytest.fixture
def arithmetic(users):
    return Scorer.objects.create(name="arith", adapter="arithmetic-check")


def first_ids(n: int) -> list[int]:
    return list(Trace.objects.order_by("id").values_list("id", flat=True)[:n])


def scored_run(project, scorer, user, ids, name="") -> ScoringRun:
    """A run scored in-process and marked done, as a worker leaves it."""
    run = runs.create_run(project, scorer, user, selection={"ids": ids}, name=name)
    runs.run_scoring_job(run)
    ScoringRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE)
    run.refresh_from_db()
    return run


def queued_run(project, scorer, user) -> ScoringRun:
    return runs.create_run(project, scorer, user, selection={"ids": first_ids(3)})


def expected_score(step: int) -> float:
    return max(0.0, round(0.9 - 0.2 * step, 3))


def score_file(traces, *, wrong_at: int | None = None) -> bytes:
    """The minimal score-file form, one line per trace; ``wrong_at`` gives that line
    one score too many."""
    lines = []
    for n, trace in enumerate(traces):
        scores = [expected_score(i) for i in range(trace.num_steps)]
        if n == wrong_at:
            scores.append(0.5)
        lines.append(json.dumps({"id": trace.external_id, "scores": scores}))
    return ("\n".join(lines) + "\n").encode()


def cells(content: bytes) -> list[str]:
    return re.findall(r'<td class="score-cell[^"]*"[^>]*>.*?</td>', content.decode())


# -- who may do what ------------------------------------------------------------------------


def test_it_checks_membership_for_every_page(gsm8k, arithmetic, client_for, users):
    run = queued_run(gsm8k, arithmetic, users["owner"])
    pages = [reverse("runs", args=[gsm8k.slug]), reverse("run", args=[gsm8k.slug, run.pk])]
    posts = [reverse(name, args=[gsm8k.slug, run.pk]) for name in ("run-cancel", "run-retry")] + [
        reverse("run-import", args=[gsm8k.slug]),
        reverse("runs", args=[gsm8k.slug]),
    ]
    outsider = client_for(users["outsider"])
    for url in pages + posts:
        method = outsider.get if url in pages else outsider.post
        assert method(url).status_code == 404, url
    # Annotators label blind: no run pages unless the project shows model scores.
    annotator = client_for(users["annotator"])
    for url in pages:
        assert annotator.get(url).status_code == 404, url
    for role in ("owner", "reviewer"):
        client = client_for(users[role])
        for url in pages:
            assert client.get(url).status_code == 200, (role, url)
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED


def test_only_owners_start_import_cancel_or_retry(gsm8k, arithmetic, client_for, users):
    gsm8k.show_model_scores = True
    gsm8k.save()
    run = queued_run(gsm8k, arithmetic, users["owner"])
    for role in ("annotator", "reviewer"):
        client = client_for(users[role])
        page = client.get(reverse("run", args=[gsm8k.slug, run.pk]))
        assert page.status_code == 200 and b'id="run-cancel"' not in page.content
        assert b'id="score-traces"' not in client.get(reverse("runs", args=[gsm8k.slug])).content
        start = client.post(
            reverse("runs", args=[gsm8k.slug]), {"scorer": arithmetic.pk, "name": "sneaky"}
        )
        assert start.status_code == 403
        for name in ("run-cancel", "run-retry"):
            assert client.post(reverse(name, args=[gsm8k.slug, run.pk])).status_code == 404
        upload = SimpleUploadedFile("s.jsonl", score_file(Trace.objects.all()[:2]))
        imported = client.post(
            reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "imp"}
        )
        assert imported.status_code == 404
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and not run.cancel_requested
    assert list(ScoringRun.objects.values_list("name", flat=True)) == [run.name]


def test_a_get_never_changes_state(gsm8k, arithmetic, client_for, users):
    run = queued_run(gsm8k, arithmetic, users["owner"])
    client = client_for(users["owner"])
    for name in ("run-cancel", "run-retry"):
        assert client.get(reverse(name, args=[gsm8k.slug, run.pk])).status_code == 405
    assert client.get(reverse("run-import", args=[gsm8k.slug])).status_code == 405
    query = {"scorer": arithmetic.pk, "split": "gsm8k", "name": "by-get"}
    assert client.get(reverse("runs", args=[gsm8k.slug]), query).status_code == 200
    scorers = client.get(reverse("scorers"), {"name": "x", "adapter": "arithmetic-check"})
    assert scorers.status_code == 200
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and not run.cancel_requested
    assert ScoringRun.objects.count() == 1 and Scorer.objects.count() == 1


def test_owners_cancel_a_queued_run(gsm8k, arithmetic, client_for, users):
    run = queued_run(gsm8k, arithmetic, users["owner"])
    client = client_for(users["owner"])
    response = client.post(reverse("run-cancel", args=[gsm8k.slug, run.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("run", args=[gsm8k.slug, run.pk])
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    page = client.get(response["Location"])
    assert b'id="run-retry"' in page.content and POLLING not in page.content


# -- the run page ---------------------------------------------------------------------------


def test_the_status_polls_while_active_and_stops_when_done(gsm8k, arithmetic, client_for, users):
    run = queued_run(gsm8k, arithmetic, users["owner"])
    client = client_for(users["owner"])
    url = reverse("run", args=[gsm8k.slug, run.pk])
    partial = client.get(url, headers={"HX-Request": "true"})
    assert POLLING in partial.content and b"<html" not in partial.content
    assert b"Waiting for a worker on queue <code>default</code>" in partial.content

    ScoringRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING,
        progress_done=1,
        progress_total=3,
        attempts=2,
        tokens=1000,
        scoring_seconds=2.0,
        started_at=timezone.now() - timedelta(seconds=30),
    )
    partial = client.get(url, headers={"HX-Request": "true"})
    assert POLLING in partial.content
    assert b"500 tokens/s" in partial.content and b"about 1:0" in partial.content  # 60 s left
    assert b"1 of 3" in partial.content and b"<progress" in partial.content
    assert b"attempt 2 of" in partial.content

    runs.run_scoring_job(run)
    ScoringRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE)
    partial = client.get(url, headers={"HX-Request": "true"})
    assert POLLING not in partial.content and b"hx-get" not in partial.content
    assert b'id="processbench"' in partial.content
    page = client.get(url)
    assert POLLING not in page.content and b"arithmetic-check" in page.content


def test_a_finished_run_links_to_the_dashboard(gsm8k, arithmetic, client_for, users):
    run = queued_run(gsm8k, arithmetic, users["owner"])
    client = client_for(users["owner"])
    url = reverse("run", args=[gsm8k.slug, run.pk])
    assert b'id="run-dashboard"' not in client.get(url).content
    ScoringRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE)
    dashboard = f"{reverse('dashboard', args=[gsm8k.slug])}?run={run.pk}"
    for response in (client.get(url), client.get(url, headers={"HX-Request": "true"})):
        assert f'href="{dashboard}" id="run-dashboard"'.encode() in response.content
    assert client.get(dashboard).status_code == 200


def test_a_failed_run_shows_its_error_and_a_retry(gsm8k, arithmetic, client_for, users):
    run = queued_run(gsm8k, arithmetic, users["owner"])
    ScoringRun.objects.filter(pk=run.pk).update(
        status=JobStatus.FAILED, error="could not load <the model>"
    )
    page = client_for(users["owner"]).get(reverse("run", args=[gsm8k.slug, run.pk]))
    assert b"could not load &lt;the model&gt;" in page.content
    assert b'id="run-retry"' in page.content and POLLING not in page.content


def test_the_processbench_table_matches_the_metrics(gsm8k, arithmetic, client_for, users):
    run = scored_run(gsm8k, arithmetic, users["owner"], first_ids(40))
    [row] = runs.processbench_rows(run)
    page = client_for(users["reviewer"]).get(reverse("run", args=[gsm8k.slug, run.pk]))
    table = re.search(rb'<table class="processbench".*?</table>', page.content, re.S).group()
    expected = [
        f"{row.result.acc_err:.1f}",
        f"{row.result.acc_cor:.1f}",
        f"{row.result.f1:.1f}",
        str(row.result.n_err),
        str(row.result.n_cor),
    ]
    assert row.result.n_err + row.result.n_cor == 40
    # An undefined rate (here F1 and accuracy on correct: no correct trace) reads "—", as
    # on the dashboard, never "nan".
    expected = ["—" if cell == "nan" else cell for cell in expected]
    cells_ = re.findall(rb"<td[^>]*>([^<]*)</td>", table)
    assert [c.decode() for c in cells_] == ["gsm8k", *expected]


# -- starting a run -------------------------------------------------------------------------


def test_the_form_starts_a_run(gsm8k, arithmetic, client_for, users):
    from annotator.celery import app

    broker = app.connection_for_write().default_channel.client
    queued_before = broker.llen("default")
    ids = first_ids(4)
    response = client_for(users["owner"]).post(
        reverse("runs", args=[gsm8k.slug]),
        {
            "scorer": arithmetic.pk,
            "split": "gsm8k",
            "labelled": "yes",
            "ids": f"{ids[0]}, {ids[1]} {ids[2]}",
            "name": "first-try",
        },
    )
    run = ScoringRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("run", args=[gsm8k.slug, run.pk])
    assert run.status == JobStatus.QUEUED and run.queued_at and run.queue == "default"
    assert run.name == "first-try" and run.scorer == arithmetic
    assert run.selection == {"split": "gsm8k", "labelled": "yes", "ids": ids[:3]}
    assert run.created_by == users["owner"]
    assert broker.llen("default") == queued_before + 1


def test_the_project_page_offers_score_traces_to_owners_only(gsm8k, arithmetic, client_for, users):
    run = scored_run(gsm8k, arithmetic, users["owner"], first_ids(2), name="latest")
    owner = client_for(users["owner"]).get(reverse("project", args=[gsm8k.slug]))
    assert b'id="score-traces"' in owner.content
    assert f'action="{reverse("runs", args=[gsm8k.slug])}"'.encode() in owner.content
    assert reverse("run", args=[gsm8k.slug, run.pk]).encode() in owner.content
    reviewer = client_for(users["reviewer"]).get(reverse("project", args=[gsm8k.slug]))
    assert b'id="score-traces"' not in reviewer.content and b'id="latest-runs"' in reviewer.content
    annotator = client_for(users["annotator"]).get(reverse("project", args=[gsm8k.slug]))
    assert (
        b'id="latest-runs"' not in annotator.content and b'id="runs-link"' not in annotator.content
    )


@pytest.mark.parametrize(
    ("ids", "message"),
    [("12 abc", b"ids must be trace ids"), ("999999999", b"the selection holds no traces")],
)
def test_a_bad_selection_shows_the_error(gsm8k, arithmetic, client_for, users, ids, message):
    response = client_for(users["owner"]).post(
        reverse("runs", args=[gsm8k.slug]), {"scorer": arithmetic.pk, "ids": ids}
    )
    assert response.status_code == 400
    assert message in response.content and b'id="score-error"' in response.content
    assert not ScoringRun.objects.exists()


def test_a_taken_run_name_shows_the_error(gsm8k, arithmetic, client_for, users):
    queued_run(gsm8k, arithmetic, users["owner"])
    response = client_for(users["owner"]).post(
        reverse("runs", args=[gsm8k.slug]), {"scorer": arithmetic.pk, "name": "arith"}
    )
    assert response.status_code == 400
    assert b"already has a run named &#x27;arith&#x27;" in response.content
    assert ScoringRun.objects.count() == 1


# -- importing scores -----------------------------------------------------------------------


def test_the_import_form_queues_a_score_file_whose_job_stores_the_run(gsm8k, client_for, users):
    traces = list(Trace.objects.order_by("id")[:3])
    upload = SimpleUploadedFile("scores.jsonl", score_file(traces))
    client = client_for(users["owner"])
    response = client.post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "from-file"}
    )
    job = ScoreImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("score-import", args=[gsm8k.slug, job.pk])
    waiting = client.get(response["Location"], headers={"HX-Request": "true"})
    assert POLLING in waiting.content and not ScoringRun.objects.exists()

    jobs.execute(ScoreImportJob, job.pk, runs.run_score_import_job)

    run = ScoringRun.objects.get()
    assert run.source == "imported" and run.status == JobStatus.DONE
    [stored] = runs.scores_by_trace([run], traces[1]).values()
    assert stored == pytest.approx([expected_score(i) for i in range(traces[1].num_steps)])
    done = client.get(response["Location"], headers={"HX-Request": "true"})
    assert POLLING not in done.content
    run_url = reverse("run", args=[gsm8k.slug, run.pk])
    assert f'href="{run_url}" id="score-import-run">from-file</a>' in done.content.decode()
    assert b"3 traces' scores (15 steps)" in done.content
    assert b"<code>scores.jsonl</code>" in client.get(run_url).content
    assert b"from-file" in client.get(reverse("runs", args=[gsm8k.slug])).content


def test_a_bad_score_file_fails_its_job_naming_the_line_and_writes_nothing(
    gsm8k, client_for, users
):
    traces = list(Trace.objects.order_by("id")[:3])
    upload = SimpleUploadedFile("scores.jsonl", score_file(traces, wrong_at=1))
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "from-file"}
    )
    assert response.status_code == 302
    job = ScoreImportJob.objects.get()
    jobs.execute(ScoreImportJob, job.pk, runs.run_score_import_job)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error.startswith("scores.jsonl, line 2:")
    assert not ScoringRun.objects.exists() and not StepScore.objects.exists()


def test_a_taken_run_name_is_refused_before_the_file_is_queued(gsm8k, client_for, users):
    traces = list(Trace.objects.order_by("id")[:3])
    ScoringRun.objects.create(
        project=gsm8k, name="taken", source="imported", provenance={"file": "old.jsonl"}
    )
    upload = SimpleUploadedFile("scores.jsonl", score_file(traces))
    response = client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "taken"}
    )
    assert response.status_code == 400
    assert b"already has a run named &#x27;taken&#x27;" in response.content
    assert not ScoreImportJob.objects.exists()


def test_only_owners_see_a_score_import(gsm8k, client_for, users):
    upload = SimpleUploadedFile("scores.jsonl", score_file(Trace.objects.order_by("id")[:2]))
    client_for(users["owner"]).post(
        reverse("run-import", args=[gsm8k.slug]), {"file": upload, "name": "imp"}
    )
    job = ScoreImportJob.objects.get()
    urls = [reverse("score-import", args=[gsm8k.slug, job.pk])]
    urls += [reverse(f"score-import-{a}", args=[gsm8k.slug, job.pk]) for a in ("cancel", "retry")]
    for role in ("reviewer", "annotator", "outsider"):
        client = client_for(users[role])
        assert client.get(urls[0]).status_code == 404, role
        for url in urls[1:]:
            assert client.post(url).status_code == 404, (role, url)
    owner = client_for(users["owner"])
    assert owner.get(urls[1]).status_code == 405  # a GET never cancels
    assert owner.post(urls[1]).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


# -- scorers --------------------------------------------------------------------------------


def test_only_staff_register_scorers(users, client_for):
    client = client_for(users["owner"])
    page = client.get(reverse("scorers"))
    assert page.status_code == 200 and b'id="scorer-form"' not in page.content
    data = {"name": "arith2", "adapter": "arithmetic-check", "options": "{}"}
    assert client.post(reverse("scorers"), data).status_code == 403
    assert not Scorer.objects.exists()

    users["owner"].is_staff = True
    users["owner"].save()
    response = client.post(reverse("scorers"), data)
    assert response.status_code == 302
    scorer = Scorer.objects.get()
    assert scorer.name == "arith2" and scorer.created_by == users["owner"]
    assert b"arith2" in client.get(reverse("scorers")).content


def test_scorer_registration_shows_validation_errors(users, client_for):
    users["owner"].is_staff = True
    users["owner"].save()
    client = client_for(users["owner"])
    response = client.post(
        reverse("scorers"),
        {"name": "qwen", "adapter": "qwen-prm", "options": '{"threshold": 2, "colour": "red"}'},
    )
    assert response.status_code == 400
    content = response.content.decode()
    assert re.search(r'id="error-model">the qwen-prm adapter needs a model', content)
    assert 'id="error-options">' in content
    assert not Scorer.objects.exists()


def test_the_scorers_page_needs_a_login(client, db):
    response = client.get(reverse("scorers"))
    assert response.status_code == 302 and "/login/" in response["Location"]


# -- score cells beside the labels ----------------------------------------------------------


@pytest.fixture
def two_runs(gsm8k, arithmetic, users):
    """Two runs over the same trace: the arithmetic check and an imported file."""
    trace = Trace.objects.order_by("-num_steps", "id").first()
    checked = scored_run(gsm8k, arithmetic, users["owner"], [trace.pk])
    upload = SimpleUploadedFile("scores.jsonl", score_file([trace]))
    imported = runs.import_scores(
        gsm8k, upload.file, "scores.jsonl", name="imp", user=users["owner"]
    )
    return trace, [checked, imported]


def test_the_trace_page_shows_a_cell_per_step_per_run(two_runs, client_for, users):
    trace, [checked, imported] = two_runs
    page = client_for(users["owner"]).get(reverse("trace", args=["gsm8k", trace.pk]))
    found = cells(page.content)
    assert len(found) == 2 * trace.num_steps
    content = page.content.decode()
    scores = runs.scores_by_trace([imported], trace)[imported.pk]
    for index, score in enumerate(scores):
        text = f"{score:.3f}"
        assert f'title="imp, step {index}: {text}"' in content
        assert f'<span class="sr">imp, step {index}: {text}' in content
    predicted = metrics.first_error(scores, imported.threshold)
    assert predicted >= 0  # the file's scores fall below 0.5 along the way
    marked = [c for c in found if "predicted-fe" in c and "imp, step" in c]
    assert len(marked) == 1 and f"imp, step {predicted}:" in marked[0]
    assert "predicted first error" in marked[0]
    verdict = Verdict.resolve(Annotation.objects.filter(trace=trace, is_latest=True))
    assert f"step {verdict.first_error_step}" in re.search(
        r'id="human-first-error">(.*?)</td>', content
    ).group(1)


def test_a_step_without_a_verdict_is_grey_and_says_nan(gsm8k, client_for, users):
    trace = Trace.objects.order_by("id").first()
    line = {"id": trace.external_id, "scores": [0.9] + [None] * (trace.num_steps - 1)}
    upload = SimpleUploadedFile("nan.jsonl", json.dumps(line).encode())
    run = runs.import_scores(gsm8k, upload.file, "nan.jsonl", name="gaps", user=users["owner"])
    page = client_for(users["owner"]).get(reverse("trace", args=["gsm8k", trace.pk]))
    found = cells(page.content)
    assert len(found) == trace.num_steps
    assert 'style="--score: 0.900"' in found[0] and "nan" not in found[0]
    for cell in found[1:]:
        assert 'class="score-cell nan' in cell and "style=" not in cell
        assert re.search(r'title="gaps, step \d+: nan"', cell)
    # NaN gives no prediction at any threshold, so no cell is marked.
    assert metrics.first_error([0.9, math.nan], run.threshold) == NO_PREDICTION
    assert "predicted-fe" not in "".join(found)
    row = re.search(r'<tr class="score-row" data-run="gaps">.*?</tr>', page.content.decode(), re.S)
    assert "no prediction" in row.group()


def test_annotators_see_cells_only_where_the_project_shows_them(two_runs, client_for, users):
    trace, _ = two_runs
    client = client_for(users["annotator"])
    urls = [
        reverse("trace", args=["gsm8k", trace.pk]),
        reverse("annotate-trace", args=["gsm8k", trace.pk]),
    ]
    for url in urls:
        page = client.get(url)
        assert page.status_code == 200 and cells(page.content) == [], url
        assert b"Model scores" not in page.content
    trace.project.show_model_scores = True
    trace.project.save()
    for url in urls:
        assert len(cells(client.get(url).content)) == 2 * trace.num_steps, url


def test_reviewers_see_cells_on_the_review_page(two_runs, client_for, users):
    trace, _ = two_runs
    page = client_for(users["reviewer"]).get(reverse("review-trace", args=["gsm8k", trace.pk]))
    assert page.status_code == 200
    assert len(cells(page.content)) == 2 * trace.num_steps


def test_the_trace_page_queries_do_not_grow_with_steps_or_runs(
    two_runs, arithmetic, client_for, users, django_assert_max_num_queries
):
    trace, _ = two_runs
    short = Trace.objects.filter(project=trace.project, num_steps__lt=trace.num_steps).first()
    client = client_for(users["annotator"])
    url = reverse("trace", args=["gsm8k", trace.pk])
    with CaptureQueriesContext(connection) as blind:
        client.get(url)
    trace.project.show_model_scores = True
    trace.project.save()
    scored_run(trace.project, arithmetic, users["owner"], [trace.pk, short.pk], name="third")
    with django_assert_max_num_queries(len(blind) + 2):
        page = client.get(url)
    assert len(cells(page.content)) == 3 * trace.num_steps
    with CaptureQueriesContext(connection) as long_page:
        client.get(url)
    with CaptureQueriesContext(connection) as short_page:
        page = client.get(reverse("trace", args=["gsm8k", short.pk]))
    assert len(cells(page.content)) == short.num_steps  # only "third" scored it
    assert len(short_page) == len(long_page)


def test_the_label_page_shows_model_scores_after_the_verdict_controls(two_runs, client_for, users):
    trace, _ = two_runs
    trace.project.show_model_scores = True
    trace.project.save()
    content = (
        client_for(users["owner"])
        .get(reverse("annotate-trace", args=["gsm8k", trace.pk]))
        .content.decode()
    )
    # The labeller answers first: steps, final answer, verdict radios, flag and buttons
    # all come before the scores table in the document (and so in the Tab order).
    order = [
        f'id="step-{trace.num_steps - 1}"',
        'name="first_error_step" value="-1"',
        'id="flag-box"',
        'id="submit"',
        'id="model-scores"',
    ]
    positions = [content.index(marker) for marker in order]
    assert positions == sorted(positions)


def _scorer_cells(content: bytes) -> list[str]:
    """The Scorer column of the runs table, tags removed."""
    table = re.search(r'<table class="run-table" id="runs">(.*?)</table>', content.decode(), re.S)
    rows = re.findall(r"<tr>\s*<td>.*?</td>\s*<td>(.*?)</td>", table.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


def test_the_runs_table_names_the_scorer_once(gsm8k, client_for, users):
    named_as_adapter = Scorer.objects.create(name="arithmetic-check", adapter="arithmetic-check")
    scored_run(gsm8k, named_as_adapter, users["owner"], first_ids(2))
    other = Scorer.objects.create(name="arith", adapter="arithmetic-check")
    scored_run(gsm8k, other, users["owner"], first_ids(2))
    page = client_for(users["owner"]).get(reverse("runs", args=["gsm8k"]))
    assert sorted(_scorer_cells(page.content)) == ["arith arithmetic-check", "arithmetic-check"]
