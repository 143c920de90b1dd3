"""Creating projects, settings and members."""

from __future__ import annotations

import re

from django.urls import reverse

from annotator.models import Annotation, LabelScheme, Membership, Project, Role


def test_a_new_project_makes_its_creator_owner(client_for, users):
    users["outsider"].is_staff = True  # creating projects is a site permission
    users["outsider"].save()
    response = client_for(users["outsider"]).post(
        reverse("project-create"), {"name": "MATH", "slug": "math", "guidelines": ""}
    )
    assert response.status_code == 302
    project = Project.objects.get(slug="math")
    assert Membership.objects.get(project=project).user == users["outsider"]
    assert Membership.objects.get(project=project).role == Role.OWNER


def test_settings_are_for_owners_only(client_for, users, project):
    for who in ("reviewer", "annotator", "outsider"):
        assert (
            client_for(users[who]).get(reverse("project-settings", args=[project.slug])).status_code
            == 404
        )
    assert (
        client_for(users["owner"]).get(reverse("project-settings", args=[project.slug])).status_code
        == 200
    )


def test_owner_changes_settings_and_bad_values_are_refused(client_for, users, project):
    client = client_for(users["owner"])
    data = {
        "name": "GSM8K v2",
        "guidelines": "Be strict.",
        "annotators_per_trace": 3,
        "label_scheme": LabelScheme.PER_STEP,
        "show_reference_answer": "",
        "show_model_scores": "on",
        "show_timer": "on",
        "queue_order": "random",
        "queue_seed": 7,
        "lock_minutes": 5,
        "gold_rate": 0.1,
        "screening_questions": 3,
        "screening_accuracy": 0.9,
    }
    assert client.post(reverse("project-settings", args=[project.slug]), data).status_code == 302
    project.refresh_from_db()
    assert (
        project.name,
        project.annotators_per_trace,
        project.label_scheme,
        project.show_reference_answer,
        project.show_timer,
    ) == (
        "GSM8K v2",
        3,
        LabelScheme.PER_STEP,
        False,
        True,
    )
    response = client.post(
        reverse("project-settings", args=[project.slug]),
        data | {"gold_rate": 1.5, "annotators_per_trace": 0},
    )
    assert response.status_code == 200
    assert "A share between 0 and 1." in response.content.decode()
    project.refresh_from_db()
    assert project.gold_rate == 0.1 and project.annotators_per_trace == 3


def test_owner_adds_changes_and_removes_members(client_for, users, project, django_user_model):
    newcomer = django_user_model.objects.create_user("nina", password="pw-nina-123")
    client = client_for(users["owner"])
    client.post(
        reverse("member-add", args=[project.slug]), {"username": "nina", "role": Role.ANNOTATOR}
    )
    assert Membership.objects.get(project=project, user=newcomer).role == Role.ANNOTATOR
    client.post(
        reverse("member-add", args=[project.slug]), {"username": "nina", "role": Role.REVIEWER}
    )
    membership = Membership.objects.get(project=project, user=newcomer)
    assert membership.role == Role.REVIEWER
    client.post(reverse("member-remove", args=[project.slug, membership.id]))
    assert not Membership.objects.filter(project=project, user=newcomer).exists()

    response = client.post(
        reverse("member-add", args=[project.slug]),
        {"username": "ghost", "role": Role.ANNOTATOR},
        follow=True,
    )
    assert "No active user named &#x27;ghost&#x27;." in response.content.decode()


def test_the_last_owner_cannot_be_removed(client_for, users, project):
    owner = Membership.objects.get(project=project, user=users["owner"])
    client_for(users["owner"]).post(reverse("member-remove", args=[project.slug, owner.id]))
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_the_last_owner_cannot_demote_themselves(client_for, users, project):
    response = client_for(users["owner"]).post(
        reverse("member-add", args=[project.slug]),
        {"username": "olive", "role": Role.ANNOTATOR},
        follow=True,
    )
    assert "olive is the only owner" in response.content.decode()
    assert Membership.objects.get(project=project, user=users["owner"]).role == Role.OWNER


def test_the_members_url_takes_owners_to_the_members_list(client_for, users, project):
    url = reverse("member-add", args=[project.slug])
    response = client_for(users["owner"]).get(url)
    assert (response.status_code, response["Location"]) == (
        302,
        reverse("project-settings", args=[project.slug]),
    )
    assert b"<h2>Members</h2>" in client_for(users["owner"]).get(url, follow=True).content
    for who in ("reviewer", "outsider"):
        assert client_for(users[who]).get(url).status_code == 404


def test_non_owners_cannot_manage_members(client_for, users, project):
    response = client_for(users["reviewer"]).post(
        reverse("member-add", args=[project.slug]), {"username": "oscar", "role": Role.OWNER}
    )
    assert response.status_code == 404
    assert not Membership.objects.filter(project=project, user=users["outsider"]).exists()


def test_only_users_with_the_site_permission_see_and_use_new_project(client_for, users):
    from django.contrib.auth.models import Permission

    client = client_for(users["annotator"])
    assert b"New project" not in client.get(reverse("home")).content
    assert client.post(reverse("project-create"), {"name": "X", "slug": "x"}).status_code == 403
    users["annotator"].user_permissions.add(Permission.objects.get(codename="add_project"))
    users["annotator"] = type(users["annotator"]).objects.get(pk=users["annotator"].pk)
    client = client_for(users["annotator"])
    assert b"New project" in client.get(reverse("home")).content
    assert client.post(reverse("project-create"), {"name": "X", "slug": "x"}).status_code == 302


def test_the_settings_and_login_forms_use_the_site_form_layout(project, users, client_for):
    from django.test import Client

    settings_page = client_for(users["owner"]).get(reverse("project-settings", args=[project.slug]))
    html = settings_page.content.decode()
    form = html[
        html.index('id="settings-form"') : html.index("</form>", html.index('id="settings-form"'))
    ]
    assert 'class="settings run-form stacked"' in html
    assert '<div class="field"><label for="id_name">' in form and "<p>" not in form

    refused = Client().post(reverse("login"), {"username": "nobody", "password": "wrong"})
    text = refused.content.decode()
    assert '<form method="post" action="/login/" class="run-form stacked" id="login-form">' in text
    assert '<p class="error" role="alert">Please enter a correct username' in text
    assert "errorlist" not in text


def test_imported_verdicts_count_as_fully_labelled_on_the_home_page(labelled, users, client_for):
    # The nine traces were imported with a verdict each and nobody labelled them here:
    # they need no labels from the queue to have a verdict.
    page = client_for(users["owner"]).get(reverse("home"))
    assert re.search(rb'class="figure labelled">9 <span class="muted small">\(100%\)', page.content)


def test_a_trace_short_of_its_labels_without_a_verdict_is_not_fully_labelled(
    labelled, users, client_for
):
    Annotation.objects.filter(trace__project=labelled).update(first_error_step=None)
    page = client_for(users["owner"]).get(reverse("home"))
    assert re.search(rb'class="figure labelled">0 ', page.content)
