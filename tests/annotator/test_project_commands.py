"""create_project and add_member: a project and its team from the shell."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from annotator.models import LabelScheme, Membership, Project, Role


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_creates_a_project_with_its_owner(users):
    out = run(
        "create_project", "prm", "--name", "PRM labels", "--owner", "olive",
        "--annotators-per-trace", "3", "--scheme", "per_step",
    )  # fmt: skip
    assert "created project prm" in out
    project = Project.objects.get(slug="prm")
    assert (project.name, project.annotators_per_trace, project.label_scheme) == (
        "PRM labels",
        3,
        LabelScheme.PER_STEP,
    )
    assert Membership.objects.get(project=project).user == users["owner"]
    assert Membership.objects.get(project=project).role == Role.OWNER


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gsm8k", "--name", "again"], "exists already"),
        (["new", "--name", "x", "--owner", "nobody"], "no user 'nobody'"),
        (["new", "--name", "x", "--annotators-per-trace", "0"], "at least 1"),
        (["not a slug", "--name", "x"], "slug"),
    ],
)
def test_it_refuses_bad_projects(project, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_project", *args)
    assert Project.objects.count() == 1


def test_it_adds_and_creates_members_who_can_log_in(project, users):
    run("add_member", "gsm8k", "oscar", "--role", "reviewer")
    assert Membership.objects.get(project=project, user=users["outsider"]).role == Role.REVIEWER
    out = run("add_member", "gsm8k", "newbie", "--role", "annotator", "--create-user")
    password = re.search(r"with password: (\S+)", out).group(1)
    user = get_user_model().objects.get(username="newbie")
    assert Membership.objects.get(project=project, user=user).role == Role.ANNOTATOR
    client = Client()
    assert client.login(username="newbie", password=password)
    assert client.get("/p/gsm8k/").status_code == 200


def test_add_member_refuses_what_the_settings_page_refuses(project, users):
    with pytest.raises(CommandError, match="--create-user makes one"):
        run("add_member", "gsm8k", "ghost", "--role", "annotator")
    with pytest.raises(CommandError, match="no project"):
        run("add_member", "nope", "alan", "--role", "annotator")
    with pytest.raises(CommandError, match="only owner"):
        run("add_member", "gsm8k", "olive", "--role", "annotator")
    assert not get_user_model().objects.filter(username="ghost").exists()
