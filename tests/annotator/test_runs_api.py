"""The scoring-run API and commands: scorers, runs, a trace's scores, imported score
files and the export's step scores."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotator import jobs, runs
from annotator.importing import import_file
from annotator.models import ScoreImportJob, Scorer, ScoringRun, StepScore, Trace
from tests.factories import PROCESSBENCH_GSM8K, cli_scores

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_for():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


@pytest.fixture
def scored(gsm8k, users):
    scorer = Scorer.objects.create(name="arith", adapter="arithmetic-check")
    run = runs.create_run(gsm8k, scorer, users["owner"])
    runs.run_scoring_job(run)
    ScoringRun.objects.filter(pk=run.pk).update(status="done")
    run.refresh_from_db()
    return run


def test_only_staff_register_scorers(api_for, users):
    body = {"name": "arith", "adapter": "arithmetic-check", "options": {"threshold": 0.5}}
    assert api_for(users["owner"]).post("/api/v1/scorers/", body, format="json").status_code == 403
    users["owner"].is_staff = True
    users["owner"].save()
    response = api_for(users["owner"]).post("/api/v1/scorers/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["queue"] == "default"
    bad = {"name": "q", "adapter": "qwen-prm", "options": {"bogus": 1}}
    response = api_for(users["owner"]).post("/api/v1/scorers/", bad, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"model", "options", "detail", "code"}  # errors by field, too
    listed = api_for(users["annotator"]).get("/api/v1/scorers/").json()
    assert [s["name"] for s in listed] == ["arith"]


def test_owners_start_runs_and_others_cannot(api_for, users, gsm8k):
    Scorer.objects.create(name="arith", adapter="arithmetic-check")
    body = {"scorer": "arith", "selection": {"split": "gsm8k", "labelled": "yes"}}
    for role, expected in (("outsider", 404), ("annotator", 404), ("reviewer", 404)):
        response = api_for(users[role]).post("/api/v1/projects/gsm8k/runs/", body, format="json")
        assert response.status_code == expected, role
    response = api_for(users["owner"]).post("/api/v1/projects/gsm8k/runs/", body, format="json")
    assert response.status_code == 202, response.content
    run = ScoringRun.objects.get()
    assert response.json()["status"] == "queued" and run.queue == "default"
    assert run.selection == {"split": "gsm8k", "labelled": "yes"}
    response = api_for(users["owner"]).post(
        "/api/v1/projects/gsm8k/runs/",
        {"scorer": "arith", "selection": {"split": "x"}},
        format="json",
    )
    assert response.status_code == 400 and "no traces" in response.json()["detail"]
    assert response.json()["code"] == "refused"  # the README's {"detail", "code"}


def test_annotators_see_no_scores_unless_the_project_shows_them(api_for, users, scored, gsm8k):
    trace = Trace.objects.filter(project=gsm8k).first()
    url = f"/api/v1/projects/gsm8k/traces/{trace.pk}/scores/"
    assert api_for(users["annotator"]).get(url).status_code == 404
    assert api_for(users["annotator"]).get("/api/v1/projects/gsm8k/runs/").status_code == 404
    gsm8k.show_model_scores = True
    gsm8k.save()
    scores = api_for(users["annotator"]).get(url).json()["runs"]
    stored = list(
        StepScore.objects.filter(run=scored, trace=trace)
        .order_by("step_index")
        .values_list("score", flat=True)
    )
    assert scores == {"arith": stored} and len(stored) == trace.num_steps


def test_a_run_lists_with_its_processbench_table(api_for, users, scored):
    listed = api_for(users["reviewer"]).get("/api/v1/projects/gsm8k/runs/").json()
    assert [(r["name"], r["status"]) for r in listed] == [("arith", "done")]
    detail = api_for(users["reviewer"]).get(f"/api/v1/projects/gsm8k/runs/{scored.pk}/").json()
    (row,) = detail["processbench"]
    assert row["split"] == "gsm8k" and row["n_err"] + row["n_cor"] == 400


def test_the_api_queues_a_score_file_and_its_job_refuses_a_bad_one(api_for, users, gsm8k, tmp_path):
    out = tmp_path / "s.jsonl"
    cli_scores(None, PROCESSBENCH_GSM8K, out, "arithmetic-check")
    client = api_for(users["owner"])
    response = client.post(
        "/api/v1/projects/gsm8k/runs/import/",
        {"file": SimpleUploadedFile("s.jsonl", out.read_bytes()), "name": "from-file"},
    )
    assert response.status_code == 202, response.content
    queued = response.json()
    assert (queued["status"], queued["name"], queued["file_name"]) == (
        "queued",
        "from-file",
        "s.jsonl",
    )
    jobs.execute(ScoreImportJob, queued["id"], runs.run_score_import_job)
    done = client.get(f"/api/v1/projects/gsm8k/runs/imports/{queued['id']}/").json()
    run = ScoringRun.objects.get(name="from-file")
    assert done["status"] == "done" and done["run"] == run.pk
    assert done["summary"]["traces"] == 400
    assert StepScore.objects.count() == sum(Trace.objects.values_list("num_steps", flat=True))

    response = client.post(
        "/api/v1/projects/gsm8k/runs/import/",
        {"file": SimpleUploadedFile("b.jsonl", b'{"id": "gsm8k-0", "scores": []}\n'), "name": "b"},
    )
    assert response.status_code == 202
    jobs.execute(ScoreImportJob, response.json()["id"], runs.run_score_import_job)
    failed = client.get(f"/api/v1/projects/gsm8k/runs/imports/{response.json()['id']}/").json()
    assert failed["status"] == "failed" and failed["run"] is None
    assert failed["error"].startswith("b.jsonl, line 1: 0 scores for trace 'gsm8k-0'")
    assert not ScoringRun.objects.filter(name="b").exists()
    taken = client.post(
        "/api/v1/projects/gsm8k/runs/import/",
        {"file": SimpleUploadedFile("s.jsonl", out.read_bytes()), "name": "from-file"},
    )
    assert taken.status_code == 400 and "already has a run named" in taken.json()["detail"]
    for who in ("reviewer", "annotator", "outsider"):
        url = f"/api/v1/projects/gsm8k/runs/imports/{queued['id']}/"
        assert api_for(users[who]).get(url).status_code == 404, who


def test_commands_register_score_and_import(gsm8k, tmp_path, capsys):
    call_command(
        "add_scorer", "arith", "--adapter", "arithmetic-check", "--option", "threshold=0.7"
    )
    assert Scorer.objects.get(name="arith").options == {"threshold": 0.7}
    with pytest.raises(CommandError, match="unknown option"):
        call_command("add_scorer", "x", "--adapter", "arithmetic-check", "--option", "nope=1")

    call_command("score_traces", "--project", "gsm8k", "--scorer", "arith", "--now", verbosity=0)
    run = ScoringRun.objects.get(name="arith")
    assert run.status == "done" and run.created_by is None and run.threshold == 0.7
    assert "acc erroneous" in capsys.readouterr().out

    out = tmp_path / "s.jsonl"
    expected = cli_scores(None, PROCESSBENCH_GSM8K, out, "arithmetic-check")
    call_command("import_scores", str(out), "--project", "gsm8k", "--name", "file")
    imported = ScoringRun.objects.get(name="file")
    ids = dict(Trace.objects.values_list("id", "external_id"))
    got: dict[str, list[float]] = {}
    for trace_id, score in (
        StepScore.objects.filter(run=imported)
        .order_by("trace_id", "step_index")
        .values_list("trace_id", "score")
    ):
        got.setdefault(ids[trace_id], []).append(score)
    assert got == expected
    # The same numbers as the run that scored in-process.
    assert sorted(
        StepScore.objects.filter(run=run).values_list("trace_id", "step_index", "score")
    ) == sorted(
        StepScore.objects.filter(run=imported).values_list("trace_id", "step_index", "score")
    )


def test_the_export_carries_the_runs_step_scores(scored, gsm8k, tmp_path):
    out = tmp_path / "e.jsonl"
    call_command(
        "export_dataset",
        "--project",
        "gsm8k",
        "--format",
        "jsonl",
        "--out",
        str(out),
        "--scores",
        "all",
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 400
    for record in records:
        assert list(record["step_scores"]) == ["arith"]
        assert len(record["step_scores"]["arith"]) == len(record["steps"])
    with pytest.raises(CommandError, match="no run named 'nope'"):
        call_command(
            "export_dataset",
            "--project",
            "gsm8k",
            "--format",
            "jsonl",
            "--out",
            str(out),
            "--scores",
            "nope",
        )
    with pytest.raises(CommandError, match="jsonl format only"):
        call_command(
            "export_dataset",
            "--project",
            "gsm8k",
            "--format",
            "trl",
            "--out",
            str(out),
            "--scores",
            "arith",
        )
