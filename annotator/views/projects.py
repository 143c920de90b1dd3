"""Home, the project page, and creating projects, their settings and members."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotator import labelling, review
from annotator.access import get_membership
from annotator.exporting import EXPORT_FORMATS, LABEL_SOURCES
from annotator.filters import TraceFilter, bad_parameter_is_400
from annotator.models import Annotation, JobStatus, Membership, Project, Role, ScoringRun, Trace
from annotator.views.runs import LATEST_RUNS, ScoreForm

TRACES_PER_PAGE = 50


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
            "show_timer",
            "queue_order",
            "queue_run",
            "queue_seed",
            "lock_minutes",
            "max_holds_per_person",
            "gold_rate",
            "screening_questions",
            "screening_accuracy",
        ]

    # Optional in the form: a settings form posted without it keeps the current cap.
    max_holds_per_person = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        help_text=Project._meta.get_field("max_holds_per_person").help_text,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the project's own finished runs (and the one chosen now, whatever became
        # of it): another project's run would order this queue by scores of traces it
        # does not hold, and its name must not leak here.
        project = self.instance
        self.fields["queue_run"].queryset = ScoringRun.objects.filter(
            Q(status=JobStatus.DONE) | Q(pk=project.queue_run_id), project=project
        ).order_by("id")

    def clean_max_holds_per_person(self) -> int:
        value = self.cleaned_data["max_holds_per_person"]
        return self.instance.max_holds_per_person if value is None else value

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
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The user's projects with their role and progress: traces, traces with all their
    labels, and (for reviewers) traces whose annotators disagree, not yet adjudicated."""
    regular = Q(traces__is_gold=False)
    projects = list(
        Project.objects.filter(memberships__user=request.user)
        .annotate(
            role=F("memberships__role"),
            n_traces=Count("traces", filter=regular),
        )
        .order_by("name")
    )
    n_labelled = dict(
        Trace.objects.filter(project__in=projects, is_gold=False)
        .filter(labelling.fully_labelled())
        .order_by()
        .values("project")
        .annotate(n=Count("id"))
        .values_list("project", "n")
    )
    for project in projects:
        project.n_labelled = n_labelled.get(project.pk, 0)
        project.role_name = Role(project.role).label
        project.n_review = None
        if Membership(role=project.role).may_review():
            disputed = review.disagreements(project)
            project.n_review = f"{len(disputed)}{'+' if len(disputed) >= review.MAX_ROWS else ''}"
    return render(
        request,
        "home.html",
        {"projects": projects, "may_create_projects": may_create_projects(request.user)},
    )


@login_required
@require_GET
@bad_parameter_is_400
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    project = membership.project
    visible = Trace.objects.filter(project=project).visible_to(membership)
    traces = TraceFilter.from_params(request.GET).apply(visible, membership)
    page = Paginator(traces.select_related("problem").order_by("id"), TRACES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    # The Labels column counts the latest labels the member may see (a blind
    # annotator: their own), as ``?labelled=`` does.
    counts = (
        Annotation.objects.filter(trace__in=[t.id for t in page.object_list])
        .latest_versions()
        .visible_to(membership)
        .counts_by_trace()
    )
    rows = [(trace, counts.get(trace.id, 0)) for trace in page.object_list]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "project": project,
        "membership": membership,
        "page": page,
        "rows": rows,
        "filters": request.GET,
        "query": query.urlencode(),
        "export_formats": EXPORT_FORMATS,
        "label_sources": [
            *LABEL_SOURCES,
            *project.label_sets.order_by("name").values_list("name", flat=True),
        ],
        **visible.facets(),
    }
    if request.htmx:
        return render(request, "project.html#trace-table", context)
    if membership.sees_model_scores():
        context["latest_runs"] = project.scoring_runs.order_by("-id")[:LATEST_RUNS]
    if membership.may_manage():
        context["score_form"] = ScoreForm(project, facets=context)
    return render(request, "project.html", context)


def may_create_projects(user) -> bool:
    """A site permission, not something every account has: a project's owner reaches
    imports (uploads, workers). Staff, and users granted ``annotator.add_project``
    (the admin's user page, or a group), may; everyone when
    ``STEPWISE_ANYONE_MAY_CREATE_PROJECTS`` is on."""
    return (
        settings.ANYONE_MAY_CREATE_PROJECTS
        or user.is_staff
        or user.has_perm("annotator.add_project")
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    if not may_create_projects(request.user):
        raise PermissionDenied("Creating projects needs the site permission to add projects.")
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
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    form = SettingsForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        # Only the form's fields: a full save would write back the queue_ranked_as read
        # at the start of the request over a re-rank that happened since.
        form.save(commit=False).save(update_fields=SettingsForm.Meta.fields)
        messages.success(request, "Settings saved.")
        return redirect("project-settings", slug=project.slug)
    members = project.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "project_settings.html",
        {"project": project, "form": form, "members": members, "member_form": MemberForm()},
    )


@login_required
@require_http_methods(["GET", "POST"])
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    """POST adds (or changes) a member; GET goes to the members list, on the settings page."""
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    if request.method == "GET":
        return redirect("project-settings", slug=project.slug)
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
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    membership = project.memberships.filter(pk=membership_id).first()
    if membership is None:
        messages.error(request, "No such member.")
    elif membership.role == Role.OWNER and project.memberships.filter(role=Role.OWNER).count() == 1:
        messages.error(request, "A project keeps at least one owner.")
    else:
        membership.delete()
        messages.success(request, f"{membership.user.username} removed.")
    return redirect("project-settings", slug=project.slug)
