"""Scorers trained in a project belong to it: other projects' members neither see them
(their names and model paths) nor run them; and a training run registers a new scorer
or fails saying why, never replacing one."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator import jobs, runs, training
from annotator.importing import import_file
from annotator.models import Membership, Project, Role, Scorer, ScoringRun, TrainingRun
from tests.factories import PROCESSBENCH_GSM8K

pytestmark = pytest.mark.django_db


@pytest.fixture
def gsm8k(project):
    import_file(project, PROCESSBENCH_GSM8K)
    return project


@pytest.fixture
def other(users):
    """Another project: its one member is the outsider of ``project``."""
    other = Project.objects.create(slug="secret", name="Secret")
    Membership.objects.create(project=other, user=users["outsider"], role=Role.OWNER)
    return other


@pytest.fixture
def scorers(project, other):
    return {
        "site": Scorer.objects.create(name="arith", adapter="arithmetic-check"),
        "ours": Scorer.objects.create(
            name="gsm8k-mine", adapter="qwen-prm", model="/m/gsm8k/mine", project=project
        ),
        "theirs": Scorer.objects.create(
            name="secret-theirs", adapter="qwen-prm", model="/m/secret/theirs", project=other
        ),
    }


def test_a_project_uses_site_wide_scorers_and_its_own(project, other, scorers):
    assert set(Scorer.objects.usable_in(project)) == {scorers["site"], scorers["ours"]}
    assert set(Scorer.objects.usable_in(other)) == {scorers["site"], scorers["theirs"]}
    assert scorers["ours"].is_usable_in(project) and not scorers["theirs"].is_usable_in(project)


def test_a_run_with_another_projects_scorer_is_refused(gsm8k, scorers, users, client_for):
    with pytest.raises(jobs.RunError, match="belongs to another project"):
        runs.create_run(gsm8k, scorers["theirs"], users["owner"])
    api = client_for(users["owner"]).post(
        reverse("api-runs", args=[gsm8k.slug]), {"scorer": "secret-theirs"}, "application/json"
    )
    assert api.status_code == 400
    assert not ScoringRun.objects.exists()
    assert runs.create_run(gsm8k, scorers["ours"], users["owner"]).scorer == scorers["ours"]


def test_the_scorers_page_shows_a_member_site_wide_scorers_and_their_projects(
    project, scorers, client_for, users
):
    page = client_for(users["annotator"]).get(reverse("scorers"))
    assert page.status_code == 200
    assert b"arith" in page.content and b"gsm8k-mine" in page.content
    assert b"secret-theirs" not in page.content and b"/m/secret/theirs" not in page.content

    users["reviewer"].is_staff = True
    users["reviewer"].save()
    assert b"secret-theirs" in client_for(users["reviewer"]).get(reverse("scorers")).content


def test_the_scorer_api_lists_a_member_site_wide_scorers_and_their_projects(
    project, scorers, client_for, users
):
    listed = client_for(users["annotator"]).get(reverse("api-scorers"))
    assert listed.status_code == 200
    assert sorted(s["name"] for s in listed.json()) == ["arith", "gsm8k-mine"]
    assert b"/m/secret/theirs" not in listed.content

    users["reviewer"].is_staff = True
    users["reviewer"].save()
    staff = client_for(users["reviewer"]).get(reverse("api-scorers")).json()
    assert sorted(s["name"] for s in staff) == ["arith", "gsm8k-mine", "secret-theirs"]


def test_the_run_api_answers_another_projects_scorer_as_one_that_does_not_exist(
    gsm8k, scorers, client_for, users
):
    client = client_for(users["owner"])
    url = reverse("api-runs", args=[gsm8k.slug])
    theirs = client.post(url, {"scorer": "secret-theirs"}, "application/json")
    missing = client.post(url, {"scorer": "no-such-one"}, "application/json")
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json()["scorer"] == ["Object with name=secret-theirs does not exist."]
    # Word for word the answer to a name no project has: nothing tells the two apart.
    assert theirs.content.replace(b"secret-theirs", b"no-such-one") == missing.content
    assert not ScoringRun.objects.exists()


def test_the_score_form_offers_and_accepts_only_usable_scorers(gsm8k, scorers, client_for, users):
    client = client_for(users["owner"])
    url = reverse("runs", args=[gsm8k.slug])
    page = client.get(url)
    assert b"gsm8k-mine" in page.content and b"secret-theirs" not in page.content

    refused = client.post(url, {"scorer": scorers["theirs"].pk, "split": ""})
    assert refused.status_code == 400 and not ScoringRun.objects.exists()
    started = client.post(url, {"scorer": scorers["site"].pk, "split": ""})
    assert started.status_code == 302 and ScoringRun.objects.get().scorer == scorers["site"]


# -- a training run registers a new scorer, never replaces one -------------------------------


def done_training_run(project, user, name="first") -> TrainingRun:
    return TrainingRun.objects.create(
        project=project,
        name=name,
        kind="qwen-prm",
        base_model="Qwen/Qwen2.5-Math-PRM-7B",
        output_dir=f"/models/{project.slug}/{name}",
        created_by=user,
    )


def test_a_finished_run_registers_a_scorer_of_its_project(project, users):
    run = done_training_run(project, users["owner"])
    scorer = training.register_scorer(run)
    assert (scorer.name, scorer.project, scorer.model) == (
        "gsm8k-first",
        project,
        "/models/gsm8k/first",
    )
    assert TrainingRun.objects.get(pk=run.pk).scorer == scorer
    # Taken up again after it registered (its worker died before finishing): the same one.
    assert training.register_scorer(run) == scorer and Scorer.objects.count() == 1


def test_a_run_never_replaces_a_shared_scorer_of_the_same_name(project, users):
    shared = Scorer.objects.create(name="gsm8k-first", adapter="math-shepherd", model="org/prm")
    run = done_training_run(project, users["owner"])

    with pytest.raises(jobs.JobRefused, match="exists already"):
        training.register_scorer(run)

    shared.refresh_from_db()
    assert (shared.adapter, shared.model, shared.project) == ("math-shepherd", "org/prm", None)
    assert TrainingRun.objects.get(pk=run.pk).scorer is None


def test_a_run_whose_scorer_name_is_taken_or_too_long_does_not_start(project, users):
    Scorer.objects.create(name="gsm8k-taken", adapter="arithmetic-check")
    with pytest.raises(jobs.RunError, match="exists already"):
        training.create_training_run(
            project, users["owner"], kind="qwen-prm", base_model="b", name="taken"
        )
    # slug + "-" + 100 characters: more than a scorer's name holds; once cut to 100
    # characters two such runs would have shared (and overwritten) one scorer.
    with pytest.raises(jobs.RunError, match="shorter run name"):
        training.create_training_run(
            project, users["owner"], kind="qwen-prm", base_model="b", name="x" * 100
        )
    assert not TrainingRun.objects.exists()


def test_the_register_form_starts_with_no_options_not_null(client_for, users):
    users["owner"].is_staff = True
    users["owner"].save()
    page = client_for(users["owner"]).get(reverse("scorers")).content.decode()
    box = page[page.index('name="options"') :]
    assert box[box.index(">") + 1 : box.index("</textarea>")].strip() == "{}"
