"""Label sets: the list with their counts, and making one (project owners)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotator.access import get_membership
from annotator.hiding import visible_label_sets
from annotator.labelsets import LabelSetError, create_label_set, describe_params
from annotator.models import LabelSetSource, Membership, Project


class LabelSetForm(forms.Form):
    """Making a label set. The run and the two sets of a consensus are chosen among the
    project's own (menus); a name sent that the project lacks is refused by
    ``create_label_set``, its message naming the project's choices."""

    name = forms.SlugField(max_length=100)
    source = forms.ChoiceField(choices=LabelSetSource.choices)
    run = forms.SlugField(
        max_length=100,
        required=False,
        widget=forms.Select,
        help_text="Monte-Carlo runs for Monte-Carlo labels, scoring runs for a scoring run's, "
        "grounded runs for their tool-checked paths.",
    )
    threshold = forms.FloatField(required=False, help_text="Soft MC labels and scoring runs.")
    a = forms.SlugField(
        max_length=100, required=False, widget=forms.Select, label="First set (consensus)"
    )
    b = forms.SlugField(
        max_length=100, required=False, widget=forms.Select, label="Second set (consensus)"
    )
    reviewed_only = forms.BooleanField(required=False, help_text="Human: reviewers' verdicts only.")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)

        def names(queryset) -> list[tuple[str, str]]:
            return [
                (name, name) for name in queryset.order_by("name").values_list("name", flat=True)
            ]

        self.fields["run"].widget.choices = [
            ("", "—"),
            ("Monte-Carlo runs", names(project.mc_runs.all())),
            ("Scoring runs", names(project.scoring_runs.all())),
            ("Grounded runs", names(project.grounded_runs.all())),
        ]
        sets = [("", "—"), *names(project.label_sets.all())]
        self.fields["a"].widget.choices = sets
        self.fields["b"].widget.choices = sets

    def params(self) -> dict[str, object]:
        data = self.cleaned_data
        keys = {
            LabelSetSource.HUMAN: ("reviewed_only",),
            LabelSetSource.MC_HARD: ("run",),
            LabelSetSource.MC_SOFT: ("run", "threshold"),
            LabelSetSource.SCORING: ("run", "threshold"),
            LabelSetSource.CONSENSUS: ("a", "b"),
            LabelSetSource.GROUNDED: ("run",),
        }[data["source"]]
        # An unticked box is the default: stored as nothing, not as reviewed_only=False.
        return {k: data[k] for k in keys if data[k] not in (None, "", False)}


@login_required
@require_http_methods(["GET", "POST"])
def label_set_list(request: HttpRequest, slug: str) -> HttpResponse:
    # Label sets hold model-derived labels: the members who see model scores see them.
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    project = membership.project
    form = None
    status = 200
    if membership.may_manage():
        form = LabelSetForm(request.POST or None, project=project)
        if request.method == "POST":
            if form.is_valid():
                try:
                    made = create_label_set(
                        project,
                        form.cleaned_data["name"],
                        form.cleaned_data["source"],
                        form.params(),
                        request.user,
                    )
                except LabelSetError as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(request, f"Made label set {made.name}.")
                    return redirect("label-sets", slug=slug)
            status = 400
    elif request.method == "POST":
        raise PermissionDenied("only the project's owners make label sets")
    label_sets = list(visible_label_sets(membership, project.label_sets.order_by("-id")))
    for label_set in label_sets:
        label_set.details = describe_params(label_set)
    return render(
        request,
        "label_sets.html",
        {
            "project": project,
            "membership": membership,
            "label_sets": label_sets,
            "form": form,
        },
        status=status,
    )
