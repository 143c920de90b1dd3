"""Label sets from humans, a Monte-Carlo run (in-process, against the scripted server
process) and a scoring run; consensus; ``export_dataset --labels SET``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotator import runs
from annotator.importing import import_file
from annotator.labelsets import LabelSetError, create_label_set
from annotator.models import (
    Annotation,
    JobStatus,
    LabelSetEntry,
    MCRollout,
    MonteCarloRun,
    Trace,
    TraceMC,
)
from annotator.montecarlo import create_mc_run, queue_for, run_montecarlo_job
from tests.scoring import mc_server

pytestmark = pytest.mark.django_db

N_TRACES = 9


@pytest.fixture(scope="module")
def server():
    process, url = mc_server.spawn()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def planted(project, tmp_path):
    """Nine traces with planted first errors, imported without labels; ``{trace: label}``."""
    records = mc_server.planted_records(N_TRACES)
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps({**r, "label": None}) + "\n" for r in records))
    import_file(project, path, "jsonl")
    by_id = {t.external_id: t for t in Trace.objects.filter(project=project)}
    return {by_id[r["id"]]: r["label"] for r in records}


@pytest.fixture
def mc_run(project, users, planted, server):
    run = create_mc_run(
        project,
        users["owner"],
        completer=f"openai:{server}",
        model="m",
        mode="exhaustive",
        n=2,
        keep_rollouts=True,
        name="mc",
    )
    summary = run_montecarlo_job(run)  # in this process: a worker's run is tests/jobs'
    assert summary["traces"] == N_TRACES
    MonteCarloRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE, summary=summary)
    return run


def human_label_everything_but(planted, users, disagree: set[int]):
    """The annotator labels each trace with its planted first error, except the traces
    at positions ``disagree``, where the label is off by one step; returns those traces."""
    off = []
    for position, (trace, label) in enumerate(planted.items()):
        if position in disagree:
            label = label + 1 if label + 1 < trace.num_steps else -1
            off.append(trace)
        Annotation.objects.create(trace=trace, annotator=users["annotator"], first_error_step=label)
    return off


def test_mc_hard_labels_are_the_planted_first_errors(planted, mc_run) -> None:
    stored = dict(TraceMC.objects.filter(run=mc_run).values_list("trace_id", "first_error"))
    assert stored == {trace.pk: label for trace, label in planted.items()}
    # every prefix and the problem alone, n = 2 each, stored once
    expected = sum(2 * (trace.num_steps + 1) for trace in planted)
    assert MCRollout.objects.filter(run=mc_run).count() == expected
    assert sum(TraceMC.objects.filter(run=mc_run).values_list("rollouts", flat=True)) == expected


def test_consensus_keeps_exactly_the_agreeing_traces_and_exports_them(
    project, users, planted, mc_run, tmp_path
) -> None:
    off = human_label_everything_but(planted, users, disagree={1, 4})
    create_label_set(project, "humans", "human")
    create_label_set(project, "mc-hard", "mc-hard", {"run": "mc"})
    both = create_label_set(project, "agreed", "consensus", {"a": "humans", "b": "mc-hard"})

    agreeing = {trace.pk for trace in planted} - {trace.pk for trace in off}
    kept = set(LabelSetEntry.objects.filter(label_set=both).values_list("trace_id", flat=True))
    assert kept == agreeing
    assert both.summary == {
        "traces": N_TRACES - 2,
        "kept": N_TRACES - 2,
        "dropped": 2,
        "unmatched": 0,
        "agreement": (N_TRACES - 2) / N_TRACES,
        "all_correct": sum(1 for t, label in planted.items() if label == -1 and t not in off),
    }

    text = _cli_export(project, "agreed", tmp_path / "agreed.jsonl")
    exported = {json.loads(line)["id"]: json.loads(line)["label"] for line in text.splitlines()}
    assert exported == {
        trace.external_id: label for trace, label in planted.items() if trace.pk in agreeing
    }


def test_the_download_and_the_api_export_a_label_set_by_name(
    project, users, planted, mc_run, client_for, tmp_path
) -> None:
    human_label_everything_but(planted, users, disagree={1, 4})
    create_label_set(project, "mc-hard", "mc-hard", {"run": "mc"})
    expected = {
        json.loads(line)["id"]: json.loads(line)["label"]
        for line in _cli_export(project, "mc-hard", tmp_path / "cli.jsonl").splitlines()
    }
    assert expected  # the set labels every planted trace
    client = client_for(users["owner"])
    page = client.get(reverse("project", args=[project.slug]))
    assert "mc-hard" in page.context["label_sources"]
    for url in (
        reverse("export", args=[project.slug]),
        f"/api/v1/projects/{project.slug}/export/",
    ):
        response = client.get(url, {"format": "processbench", "labels": "mc-hard"})
        assert response.status_code == 200, response.content
        body = b"".join(response.streaming_content).decode()
        assert {json.loads(x)["id"]: json.loads(x)["label"] for x in body.splitlines()} == expected
        refused = client.get(url, {"format": "processbench", "labels": "no-such-set"})
        assert refused.status_code == 400
        assert "mc-hard" in refused.json()["detail"]


def _cli_export(project, labels: str, out) -> str:
    call_command(
        "export_dataset",
        "--project",
        project.slug,
        "--format",
        "processbench",
        "--labels",
        labels,
        "--out",
        str(out),
        verbosity=0,
    )
    return out.read_text()


def test_soft_and_scoring_run_sets_follow_their_thresholds(project, users, planted, mc_run):
    soft = create_label_set(project, "soft", "mc-soft", {"run": "mc", "threshold": 0.5})
    assert dict(
        LabelSetEntry.objects.filter(label_set=soft).values_list("trace", "first_error_step")
    ) == {trace.pk: label for trace, label in planted.items()}
    trace, label = next((t, lab) for t, lab in planted.items() if lab == 1)
    scores = [0.9] + [0.4] * (trace.num_steps - 1)
    line = json.dumps({"id": trace.external_id, "scores": scores}) + "\n"
    runs.import_scores(project, io.BytesIO(line.encode()), "s.jsonl", name="critic", user=None)
    at_half = create_label_set(project, "critic-50", "scoring", {"run": "critic", "threshold": 0.5})
    at_low = create_label_set(project, "critic-30", "scoring", {"run": "critic", "threshold": 0.3})
    assert at_half.entries.get().first_error_step == 1
    assert at_low.entries.get().first_error_step == -1
    assert at_half.entries.get().step_ratings == [1, -1] + [None] * (trace.num_steps - 2)


def test_it_refuses_bad_label_sets(project, planted) -> None:
    with pytest.raises(LabelSetError, match="no Monte-Carlo run"):
        create_label_set(project, "x", "mc-hard", {"run": "nope"})
    with pytest.raises(LabelSetError, match="other than"):
        create_label_set(project, "human", "human")
    with pytest.raises(CommandError, match="unknown labels 'nope'"):
        call_command(
            "export_dataset",
            "--project",
            project.slug,
            "--format",
            "jsonl",
            "--out",
            "/dev/null",
            "--labels",
            "nope",
        )


def test_pages_check_membership_and_hide_model_labels_from_blind_annotators(
    project, users, planted, mc_run, client_for
) -> None:
    trace = next(iter(planted))
    pages = [
        reverse("mc-runs", args=[project.slug]),
        reverse("mc-run", args=[project.slug, mc_run.pk]),
        reverse("label-sets", args=[project.slug]),
    ]
    for who, status in (("outsider", 404), ("annotator", 404), ("reviewer", 200), ("owner", 200)):
        client = client_for(users[who])
        assert [client.get(page).status_code for page in pages] == [status] * 3, who
    trace_page = reverse("trace", args=[project.slug, trace.pk])
    section = reverse("trace-mc", args=[project.slug, trace.pk])
    assert section not in client_for(users["annotator"]).get(trace_page).content.decode()
    assert client_for(users["annotator"]).get(section).status_code == 404
    assert client_for(users["outsider"]).get(section).status_code == 404
    # the trace page loads its Monte-Carlo section after itself
    assert f'hx-get="{section}"' in client_for(users["reviewer"]).get(trace_page).content.decode()
    html = client_for(users["reviewer"]).get(section, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="mc-values"' in html and 'data-run="mc"' in html
    label = planted[trace]
    assert ("all correct" if label == -1 else f"step {label}") in html
    assert html.count('class="score-cell') == trace.num_steps
    # the kept rollouts, for inspection: two per prefix, escaped
    assert html.count('<tr class="right">') + html.count('<tr class="wrong">') == 2 * (
        trace.num_steps + 1
    )


def test_the_run_page_shows_rollout_and_token_counts(project, users, mc_run, client_for) -> None:
    mc_run.refresh_from_db()
    html = client_for(users["owner"]).get(reverse("mc-run", args=[project.slug, mc_run.pk]))
    text = html.content.decode()
    assert f'<dd id="mc-rollouts">{mc_run.rollouts}</dd>' in text
    assert f'<dd id="mc-tokens">{mc_run.tokens}</dd>' in text
    assert mc_run.rollouts > 0 and mc_run.tokens > 0
    assert "hx-get" not in text  # done: the status stops polling


def test_only_staff_owners_start_runs_and_owners_make_sets(
    project, users, planted, mc_run, client_for, server
) -> None:
    start = {"completer": f"openai:{server}", "model": "m", "mode": "binary", "n": 2}
    start |= {"temperature": 1.0, "max_tokens": 64, "name": "from-page"}
    client = client_for(users["reviewer"])
    assert client.post(reverse("mc-runs", args=[project.slug]), start).status_code == 403
    owner = client_for(users["owner"])
    assert owner.post(reverse("mc-runs", args=[project.slug]), start).status_code == 403
    users["owner"].is_staff = True
    users["owner"].save()
    response = owner.post(reverse("mc-runs", args=[project.slug]), start)
    assert response.status_code == 302
    made = project.mc_runs.get(name="from-page")
    assert (made.mode, made.n, made.queue, made.options) == (
        "binary",
        2,
        "default",
        {"temperature": 1.0, "max_tokens": 64},
    )

    sets = reverse("label-sets", args=[project.slug])
    data = {"name": "hard", "source": "mc-hard", "run": "mc"}
    assert client_for(users["reviewer"]).post(sets, data).status_code == 403
    assert client_for(users["owner"]).post(sets, data).status_code == 302
    page = client_for(users["reviewer"]).get(sets).content.decode()
    assert 'data-name="hard"' in page and f">{len(planted)}</td>" in page
    bad = client_for(users["owner"]).post(sets, {"name": "x", "source": "mc-hard", "run": "no"})
    assert bad.status_code == 400 and "no Monte-Carlo run named" in bad.content.decode()


def test_a_tiny_local_model_runs_as_completer(project, users, planted, tmp_path, settings) -> None:
    from scoring.tiny import build_causal_lm, qwen_tokenizer

    settings.MODEL_DIR = tmp_path

    model = build_causal_lm(tmp_path / "lm", qwen_tokenizer(), "qwen2")
    one = [min(trace.pk for trace in planted)]
    run = create_mc_run(
        project,
        users["owner"],
        completer=f"hf:{model}",
        mode="binary",
        n=2,
        options={"device": "cpu", "temperature": 1.0, "max_tokens": 4, "seed": 0},
        selection={"ids": one},
        keep_rollouts=True,
    )
    # device=cpu needs no GPU: any default worker takes it; the same model otherwise waits
    # for a GPU worker.
    assert run.queue == "default" and queue_for(f"hf:{model}", {}) == "gpu"
    summary = run_montecarlo_job(run)
    assert summary["traces"] == 1 and summary["rollouts"] > 0 and summary["tokens"] > 0
    assert list(TraceMC.objects.filter(run=run).values_list("trace_id", flat=True)) == one
    assert MCRollout.objects.filter(run=run).count() == summary["rollouts"]


def test_the_api_lists_runs_and_makes_label_sets(project, users, mc_run, client_for) -> None:
    runs_url = reverse("api-mc-runs", args=[project.slug])
    assert client_for(users["outsider"]).get(runs_url).status_code == 404
    assert client_for(users["annotator"]).get(runs_url).status_code == 404
    [listed] = client_for(users["reviewer"]).get(runs_url).json()
    mc_run.refresh_from_db()
    assert (listed["name"], listed["rollouts"], listed["status"]) == ("mc", mc_run.rollouts, "done")
    detail = client_for(users["reviewer"]).get(
        reverse("api-mc-run", args=[project.slug, mc_run.pk])
    )
    assert detail.json()["tokens"] == mc_run.tokens
    start = {"completer": "openai:http://127.0.0.1:9/v1", "model": "m"}
    assert client_for(users["owner"]).post(runs_url, start).status_code == 403  # not staff

    sets_url = reverse("api-label-sets", args=[project.slug])
    made = {"name": "hard", "source": "mc-hard", "params": {"run": "mc"}}
    # as for scoring runs: a member who may not manage gets a 404 from the API
    assert client_for(users["reviewer"]).post(sets_url, made, "application/json").status_code == 404
    response = client_for(users["owner"]).post(sets_url, made, "application/json")
    assert response.status_code == 201, response.content
    assert response.json()["summary"]["traces"] == N_TRACES
    again = client_for(users["owner"]).post(sets_url, made, "application/json")
    assert again.status_code == 400 and "already has a label set" in again.json()["detail"]
    assert again.json()["code"] == "invalid"


def test_the_page_says_why_a_name_is_refused_and_how_each_set_was_made(
    project, users, planted, client_for
) -> None:
    owner = client_for(users["owner"])
    sets = reverse("label-sets", args=[project.slug])
    refused = owner.post(sets, {"name": "human", "source": "human"})
    assert refused.status_code == 400
    text = refused.content.decode()
    assert "choose a name other than human or adjudicated" in text
    assert "(&#x27;human&#x27;" not in text and "('human'" not in text  # no Python tuple

    # an unticked "reviewers only" is the default: not stored, not shown
    assert owner.post(sets, {"name": "people", "source": "human"}).status_code == 302
    assert project.label_sets.get(name="people").params == {}
    reviewed = {"name": "reviewed", "source": "human", "reviewed_only": "on"}
    assert owner.post(sets, reviewed).status_code == 302
    both = {"name": "both", "source": "consensus", "a": "people", "b": "reviewed"}
    assert owner.post(sets, both).status_code == 302
    made = project.label_sets.get(name="both")

    page = owner.get(sets).content.decode()
    table = page[page.index('id="label-sets"') : page.index("</table>")]
    assert "reviewed_only" not in table
    assert "(reviewers&#x27; verdicts only)" in table
    assert "(sets people and reviewed)" in table
    assert "<th>Unmatched</th>" in page
    row = page[page.index('data-name="both"') :].split("</tr>")[0]
    cells = [c.split(">", 1)[1].split("</td>")[0] for c in row.split("<td")[1:]]
    assert cells[6] == str(made.summary["unmatched"])
