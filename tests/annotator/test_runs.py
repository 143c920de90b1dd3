"""Scoring runs in-process on PostgreSQL: selection, storage, resume, imported score
files and scorer validation. (On a real worker, with SIGKILL: tests/jobs/.)"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from functools import partial

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from annotator import jobs, runs
from annotator.importing import import_file
from annotator.models import JobStatus, Scorer, ScoringRun, Step, StepScore, Trace, TraceScore
from tests.factories import PROCESSBENCH_GSM8K, cli_scores
from tests.scoring import mc_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


@pytest.fixture
def arithmetic(users):
    return Scorer.objects.create(name="arith", adapter="arithmetic-check")


def stored(run: ScoringRun) -> dict[str, list[float]]:
    ids = dict(Trace.objects.filter(project=run.project).values_list("id", "external_id"))
    found: dict[str, list[float]] = {}
    for trace_id, step, score in (
        StepScore.objects.filter(run=run)
        .order_by("trace_id", "step_index")
        .values_list("trace_id", "step_index", "score")
    ):
        scores = found.setdefault(ids[trace_id], [])
        assert step == len(scores)
        scores.append(score)
    return found


def test_a_run_stores_one_score_per_step_equal_to_the_cli(gsm8k, arithmetic, users, tmp_path):
    run = runs.create_run(gsm8k, arithmetic, users["owner"])
    summary = runs.run_scoring_job(run)

    expected = cli_scores(None, PROCESSBENCH_GSM8K, tmp_path / "cli.jsonl", "arithmetic-check")
    assert stored(run) == expected
    assert StepScore.objects.filter(run=run).count() == Step.objects.count()
    assert summary["traces"] == 400 and summary["steps"] == Step.objects.count()
    assert TraceScore.objects.filter(run=run).count() == 400


def test_the_tiny_qwen_prm_matches_the_cli_within_1e5(gsm8k, users, tiny_qwen_prm, tmp_path):
    scorer = Scorer.objects.create(
        name="tiny-qwen", adapter="qwen-prm", model=str(tiny_qwen_prm), options={"device": "cpu"}
    )
    run = runs.create_run(
        gsm8k,
        scorer,
        users["owner"],
        selection={"ids": list(Trace.objects.order_by("id").values_list("id", flat=True)[:60])},
    )
    runs.run_scoring_job(run)

    subset = tmp_path / "subset.json"
    wanted = set(
        Trace.objects.filter(pk__in=run.selection["ids"]).values_list("external_id", flat=True)
    )
    subset.write_text(
        json.dumps([r for r in json.loads(PROCESSBENCH_GSM8K.read_text()) if r["id"] in wanted])
    )
    expected = cli_scores(tiny_qwen_prm, subset, tmp_path / "cli.jsonl")
    got = stored(run)
    assert got.keys() == expected.keys() and len(got) == 60
    worst = max(abs(a - b) for k in got for a, b in zip(got[k], expected[k], strict=True))
    assert worst < 1e-5
    assert len({round(s, 4) for scores in got.values() for s in scores}) > 10  # not constant


def test_a_resumed_run_skips_what_it_stored_and_never_duplicates(
    gsm8k, arithmetic, users, settings
):
    settings.SCORING_CHUNK_TRACES = 50
    run = runs.create_run(gsm8k, arithmetic, users["owner"])
    first_chunk = list(Trace.objects.filter(project=gsm8k).order_by("num_steps", "id")[:50])
    runs.store_scores(run, [_constant(t, 0.25) for t in first_chunk])

    summary = runs.run_scoring_job(run)

    assert summary["resumed_at"] == 50
    assert StepScore.objects.filter(run=run).count() == Step.objects.count()
    # The 50 stored before were skipped, not scored again.
    assert set(
        StepScore.objects.filter(run=run, trace__in=first_chunk).values_list("score", flat=True)
    ) == {0.25}
    # Writing a chunk again replaces it.
    runs.store_scores(run, [_constant(t, 0.75) for t in first_chunk])
    assert StepScore.objects.filter(run=run).count() == Step.objects.count()
    assert TraceScore.objects.filter(run=run).count() == 400


def _constant(trace: Trace, value: float):
    from scoring.types import StepScores

    return StepScores(trace_id=str(trace.pk), scores=(value,) * trace.num_steps)


def test_the_run_table_compares_with_the_human_labels(gsm8k, arithmetic, users):
    run = runs.create_run(gsm8k, arithmetic, users["owner"])
    runs.run_scoring_job(run)
    rows = runs.processbench_rows(run)
    assert [r.split for r in rows] == ["gsm8k"]
    (row,) = rows
    assert row.result.n_err + row.result.n_cor == 400
    labels = {r["id"]: r["label"] for r in json.loads(PROCESSBENCH_GSM8K.read_text())}
    assert row.result.n_cor == sum(1 for v in labels.values() if v == -1)


def test_it_imports_a_cli_score_file_as_a_run(gsm8k, users, tmp_path):
    out = tmp_path / "scores.jsonl"
    expected = cli_scores(None, PROCESSBENCH_GSM8K, out, "arithmetic-check")
    with out.open("rb") as fh:
        run = runs.import_scores(gsm8k, fh, "scores.jsonl", name="arith-file", user=users["owner"])
    assert run.source == "imported" and run.status == "done"
    assert run.provenance["file"] == "scores.jsonl"
    assert run.provenance["adapter"] == "arithmetic-check"
    assert stored(run) == expected


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": "gsm8k-0", "scores": [1.0]}', "{not json"], "x.jsonl, line 2: malformed JSON"),
        (
            ['{"id": "nope", "scores": [1]}'],
            "x.jsonl, line 1: no trace in this project has id 'nope'",
        ),
        (
            ['{"id": "gsm8k-0", "scores": [1]}'],
            "x.jsonl, line 1: 1 scores for trace 'gsm8k-0', which has",
        ),
        (
            ['{"id": "gsm8k-0", "scores": ["a"]}'],
            "x.jsonl, line 1: scores[0] must be a number or null",
        ),
        (['{"scores": []}'], "x.jsonl, line 1: expected a score record {id, scores[]}"),
    ],
)
def test_a_bad_score_file_is_refused_whole_with_its_line(gsm8k, users, lines, message):
    n_steps = Trace.objects.get(external_id="gsm8k-0").num_steps
    good = json.dumps(
        {"id": "gsm8k-1", "scores": [0.5] * Trace.objects.get(external_id="gsm8k-1").num_steps}
    )
    body = "\n".join([good, *lines]) if "line 2" in message else "\n".join(lines)
    if "line 2" in message:
        body = "\n".join([json.dumps({"id": "gsm8k-0", "scores": [1.0] * n_steps}), lines[1]])
    with pytest.raises(jobs.RunError, match=re.escape(message)):
        runs.import_scores(
            gsm8k, io.BytesIO(body.encode()), "x.jsonl", name="bad", user=users["owner"]
        )
    assert not ScoringRun.objects.exists() and not StepScore.objects.exists()


def test_nan_scores_are_kept_as_no_verdict(gsm8k, users):
    trace = Trace.objects.get(external_id="gsm8k-0")
    body = json.dumps({"id": "gsm8k-0", "scores": [None] * trace.num_steps})
    run = runs.import_scores(
        gsm8k, io.BytesIO(body.encode()), "n.jsonl", name="n", user=users["owner"]
    )
    assert all(
        math.isnan(s) for s in StepScore.objects.filter(run=run).values_list("score", flat=True)
    )
    assert TraceScore.objects.get(run=run).min_score is None


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"adapter": "no-such"}, "adapter"),
        ({"adapter": "qwen-prm"}, "model"),
        ({"adapter": "qwen-prm", "model": "m", "options": {"temprature": 1}}, "options"),
        ({"adapter": "qwen-prm", "model": "m", "options": {"threshold": 2}}, "options"),
        ({"adapter": "arithmetic-check", "model": "m"}, "model"),
    ],
)
def test_a_scorer_is_validated_on_save(fields, field):
    with pytest.raises(ValidationError) as error:
        Scorer(name="s", **fields).full_clean()
    assert field in error.value.message_dict


def test_a_valid_scorer_passes_and_routes_by_device():
    gpu = Scorer(
        name="q",
        adapter="qwen-prm",
        model="Qwen/Qwen2.5-Math-PRM-7B",
        options={"protocol": "card", "threshold": 0.4},
    )
    gpu.full_clean(exclude=["created_by"])
    assert gpu.queue == "gpu" and gpu.threshold == 0.4
    assert (
        Scorer(name="c", adapter="qwen-prm", model="m", options={"device": "cpu"}).queue
        == "default"
    )
    assert Scorer(name="a", adapter="arithmetic-check").queue == "default"


def test_a_run_refuses_an_empty_selection_and_a_taken_name(gsm8k, arithmetic, users):
    with pytest.raises(jobs.RunError, match="holds no traces"):
        runs.create_run(gsm8k, arithmetic, users["owner"], selection={"split": "math"})
    runs.create_run(gsm8k, arithmetic, users["owner"], name="one")
    with pytest.raises(jobs.RunError, match="already has a run named 'one'"):
        runs.create_run(gsm8k, arithmetic, users["owner"], name="one")
    assert runs.create_run(gsm8k, arithmetic, users["owner"]).name == "arith"
    assert runs.create_run(gsm8k, arithmetic, users["owner"]).name == "arith-2"


def test_a_finished_run_leaves_its_dashboard_figures_cached(gsm8k, arithmetic, users):
    from annotator import dashboards

    run = runs.create_run(gsm8k, arithmetic, users["owner"])
    jobs.execute(ScoringRun, run.pk, runs.run_scoring_job)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE
    # The keys the dashboard's views ask for on a first visit (no filters, no tau).
    filters, version = dashboards.Filters(), dashboards.labels_version(gsm8k)

    def cold() -> None:
        pytest.fail("not warmed")

    figures = dashboards.cached("run", run, filters, version, cold, None)
    assert figures.labelled == 400
    assert dashboards.cached("charts", run, filters, version, cold, None)
    assert dashboards.cached("best-of-n", run, filters, version, cold) == dashboards.best_of_n(run)
    row = TraceScore.objects.filter(run=run).exclude(mean_score=None).first()
    assert row is not None and row.log_product is not None


class _CancelMidChunk(mc_server.Handler):
    """The scripted OpenAI-compatible server, whose answers the critic reads; while
    request ``cancel_at`` is in flight, the run's owner asks to cancel the run (on this
    request's own database connection, as a page would)."""

    def do_POST(self) -> None:
        server = self.server
        with server.lock:
            server.received += 1
            cancel_now = server.received == server.cancel_at
        if cancel_now:
            try:
                jobs.cancel(ScoringRun.objects.get(pk=server.run_id))
            finally:
                connection.close()
        super().do_POST()


@pytest.fixture
def critic_server():
    server = mc_server.Server(("127.0.0.1", 0), delay=0)
    server.RequestHandlerClass = _CancelMidChunk
    server.received = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_a_cancel_during_a_long_chunk_stops_the_run_before_the_chunk_ends(
    labelled, users, critic_server, settings
):
    """The job's cancel check reaches ``score_traces``: a chunk of a slow scorer (a
    request per trace) stops at the next trace, and nothing of it is stored."""
    settings.SCORING_CHUNK_TRACES = 100  # one chunk holds every trace
    url = f"http://127.0.0.1:{critic_server.server_address[1]}/v1"
    critic = Scorer.objects.create(
        name="critic", adapter="llm-critic", model="critic", options={"base_url": url}
    )
    run = runs.create_run(labelled, critic, users["owner"])
    critic_server.run_id, critic_server.cancel_at = run.pk, 3

    # Checked before every trace (``check_every=0``), so no timing decides the outcome.
    status = jobs.execute(ScoringRun, run.pk, partial(runs.run_scoring_job, check_every=0))

    run.refresh_from_db()
    assert status == JobStatus.CANCELLED == run.status
    assert critic_server.received == 3 < Trace.objects.filter(project=labelled).count()
    assert not TraceScore.objects.filter(run=run).exists()
