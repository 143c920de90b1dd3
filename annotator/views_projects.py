"""Creating projects, editing their settings, and managing members (owners only)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotator.access import get_membership
from annotator.models import Membership, Project, Role


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "slug", "guidelines"]


class SettingsForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = [
            "name",
            "guidelines",
            "annotators_per_trace",
            "label_scheme",
            "show_reference_answer",
            "show_model_scores",
            "queue_order",
            "queue_seed",
            "lock_minutes",
            "gold_rate",
            "screening_questions",
            "screening_accuracy",
        ]

    def clean_annotators_per_trace(self) -> int:
        value = self.cleaned_data["annotators_per_trace"]
        if value < 1:
            raise forms.ValidationError("At least one annotator per trace.")
        return value

    def clean_gold_rate(self) -> float:
        value = self.cleaned_data["gold_rate"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("A share between 0 and 1.")
        return value

    def clean_screening_accuracy(self) -> float:
        value = self.cleaned_data["screening_accuracy"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("An accuracy between 0 and 1.")
        return value


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)

    def clean_username(self):
        username = self.cleaned_data["username"]
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(f"No active user named {username!r}.")
        return user


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            project = form.save()
            Membership.objects.create(project=project, user=request.user, role=Role.OWNER)
        return redirect("project", slug=project.slug)
    return render(request, "project_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    form = SettingsForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved.")
        return redirect("project-settings", slug=project.slug)
    members = project.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "project_settings.html",
        {"project": project, "form": form, "members": members, "member_form": MemberForm()},
    )


@login_required
@require_POST
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    form = MemberForm(request.POST)
    if form.is_valid():
        user = form.cleaned_data["username"]
        owners = project.memberships.filter(role=Role.OWNER)
        if (
            form.cleaned_data["role"] != Role.OWNER
            and owners.filter(user=user).exists()
            and owners.count() == 1
        ):
            messages.error(request, f"{user.username} is the only owner; add another owner first.")
            return redirect("project-settings", slug=project.slug)
        Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": form.cleaned_data["role"]}
        )
        messages.success(request, f"{user.username} is now {form.cleaned_data['role']}.")
    else:
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    return redirect("project-settings", slug=project.slug)


@login_required
@require_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    membership = project.memberships.filter(pk=membership_id).first()
    if membership is None:
        messages.error(request, "No such member.")
    elif membership.role == Role.OWNER and project.memberships.filter(role=Role.OWNER).count() == 1:
        messages.error(request, "A project keeps at least one owner.")
    else:
        membership.delete()
        messages.success(request, f"{membership.user.username} removed.")
    return redirect("project-settings", slug=project.slug)
