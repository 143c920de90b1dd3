"""Training runs: start one, follow its loss and held-out F1 curves live, cancel or retry
it, and go from the finished model (a registered scorer) to a scoring run.

Members who see model scores see the runs; starting one is for project owners who are
also staff (``Membership.may_run_worker_jobs``): the base model names weights the
workers load, a decision about what the workers run.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotator import charts, jobs, training
from annotator.access import get_membership
from annotator.models import LabelSet, Membership, Trace, TrainingRun
from annotator.views.jobs import cancel_and_retry, start_from_form


class TrainingForm(forms.Form):
    kind = forms.ChoiceField(choices=[(k, k) for k in training.KINDS])
    base_model = forms.CharField(
        max_length=500,
        help_text="A hub id, e.g. Qwen/Qwen2.5-Math-PRM-7B, or a path inside the model directory",
    )
    label_set = forms.ModelChoiceField(
        queryset=LabelSet.objects.none(),
        required=False,
        label="Labels",
        empty_label="Human labels (agreed or adjudicated)",
    )
    eval_split = forms.CharField(
        max_length=64,
        required=False,
        widget=forms.Select,
        help_text="Held out for evaluation: one of the project's splits.",
    )
    lora_r = forms.IntegerField(min_value=0, max_value=512, initial=16, label="LoRA rank (0: full)")
    epochs = forms.FloatField(min_value=0.01, max_value=100, initial=1)
    lr = forms.FloatField(required=False, min_value=0, label="Learning rate")
    max_steps = forms.IntegerField(required=False, min_value=1)
    save_every = forms.IntegerField(required=False, min_value=1, help_text="Steps per checkpoint.")
    name = forms.SlugField(max_length=100, required=False)

    def __init__(self, *args, project=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label_set"].queryset = LabelSet.objects.filter(project=project)
        # The model's str() ("label set x in Project") reads as a fragment in a menu.
        self.fields["label_set"].label_from_instance = _label_set_choice
        # The project's splits; a split sent that holds no labelled trace is refused by
        # ``training.start_training_run``, naming the labelled traces' splits.
        splits = Trace.objects.filter(project=project).facets("split")["splits"]
        self.fields["eval_split"].widget.choices = [
            ("", "none: train on every labelled trace"),
            *((split, split) for split in splits if split),
        ]


def _label_set_choice(label_set: LabelSet) -> str:
    """``"hard: Monte-Carlo hard labels, 9 traces"``."""
    traces = label_set.summary.get("traces")
    counted = f", {traces} traces" if traces is not None else ""
    return f"{label_set.name}: {label_set.get_source_display()}{counted}"


def _page(
    request: HttpRequest, membership: Membership, form: TrainingForm | None, status: int = 200
):
    project = membership.project
    may_start = membership.may_run_worker_jobs()
    return render(
        request,
        "training_runs.html",
        {
            "project": project,
            "membership": membership,
            "runs": project.training_runs.order_by("-id"),
            "form": (form or TrainingForm(project=project)) if may_start else None,
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def training_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    if request.method == "GET":
        return _page(request, membership, None)
    if not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start training runs")
    form = TrainingForm(request.POST, project=membership.project)
    if not form.is_valid():
        return _page(request, membership, form, status=400)
    data = form.cleaned_data
    options = {"lora_r": data["lora_r"], "epochs": data["epochs"]}
    for key in ("lr", "max_steps", "save_every"):
        if data[key] is not None:
            options[key] = data[key]
    run, status = start_from_form(
        form,
        lambda: training.start_training_run(
            membership.project,
            request.user,
            kind=data["kind"],
            base_model=data["base_model"],
            label_set=data["label_set"],
            eval_split=data["eval_split"],
            options=options,
            name=data["name"],
        ),
    )
    if run is None:
        return _page(request, membership, form, status=status)
    return redirect("training-run", slug=slug, run_id=run.pk)


@login_required
@require_GET
def training_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership, run = jobs.get_job_for_user(
        request.user, slug, TrainingRun, run_id, allow=Membership.sees_model_scores
    )
    series = training.curves(run)
    # The figure as plotly JSON, drawn by static/js/training_chart.js on load and after
    # each poll; plotly's own embedding script broke when htmx swapped it.
    chart = json.loads(charts.training_curve(series).to_json()) if series else None
    latest = {name: points[-1][1] for name, points in series.items() if points}
    splits = []
    if run.status == "done" and run.scorer_id and membership.may_manage():
        splits = list(
            membership.project.traces.order_by("split").values_list("split", flat=True).distinct()
        )
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "chart": chart,
        "latest": latest,
        "splits": splits,
    }
    template = "training_run.html#training-status" if request.htmx else "training_run.html"
    return render(request, template, context)


training_cancel, training_retry = cancel_and_retry(TrainingRun, "training-run", "run_id")
