"""Monte-Carlo runs: start one, follow it (rollouts and tokens so far), cancel or retry it,
and the per-step MC values the trace page shows beside the human labels.

Starting a run is for project owners who are also staff
(``Membership.may_run_worker_jobs``): the completer spec makes the workers call a URL or
load a model from disk, a decision about what the workers run.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotator import jobs, montecarlo, shards
from annotator.access import get_membership, get_trace_for_user
from annotator.models import (
    Annotation,
    JobStatus,
    MCMode,
    Membership,
    MonteCarloRun,
    Project,
    Trace,
    TraceMC,
)
from annotator.views.jobs import cancel_and_retry, shard_traces_field, start_from_form


class MCForm(forms.Form):
    completer = forms.CharField(
        max_length=500,
        help_text="openai:http://host:8000/v1 (a vLLM server) or hf:MODEL (a hub id, or a path "
        "inside the model directory)",
    )
    model = forms.CharField(max_length=500, required=False, help_text="The served model's name.")
    mode = forms.ChoiceField(choices=MCMode.choices)
    n = forms.IntegerField(min_value=1, max_value=256, initial=8, label="Rollouts per prefix")
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0.7)
    max_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=1024)
    seed = forms.IntegerField(required=False)
    split = forms.CharField(
        max_length=64, required=False, widget=forms.Select, help_text="Only this split."
    )
    keep_rollouts = forms.BooleanField(required=False, help_text="Keep every completion.")
    name = forms.SlugField(max_length=100, required=False)
    shard_traces = shard_traces_field()

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        splits = Trace.objects.filter(project=project).facets("split")["splits"]
        self.fields["split"].widget.choices = [
            ("", "all"),
            *((split, split) for split in splits if split),
        ]


def _page(request: HttpRequest, membership: Membership, form: MCForm | None, status: int = 200):
    project = membership.project
    may_start = membership.may_run_worker_jobs()
    return render(
        request,
        "mc_runs.html",
        {
            "project": project,
            "membership": membership,
            "runs": project.mc_runs.order_by("-id"),
            "form": (form or MCForm(project=project)) if may_start else None,
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def mc_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    if request.method == "GET":
        return _page(request, membership, None)
    if not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start Monte-Carlo runs")
    form = MCForm(request.POST, project=membership.project)
    if not form.is_valid():
        return _page(request, membership, form, status=400)
    data = form.cleaned_data
    options = {"temperature": data["temperature"], "max_tokens": data["max_tokens"]}
    if data["seed"] is not None:
        options["seed"] = data["seed"]
    run, status = start_from_form(
        form,
        lambda: montecarlo.start_mc_run(
            membership.project,
            request.user,
            completer=data["completer"],
            model=data["model"],
            mode=data["mode"],
            n=data["n"],
            options=options,
            selection={"split": data["split"]},
            keep_rollouts=data["keep_rollouts"],
            name=data["name"],
            shard_traces=data["shard_traces"],
        ),
    )
    if run is None:
        return _page(request, membership, form, status=status)
    return redirect("mc-run", slug=slug, run_id=run.pk)


def agreement_with_humans(run: MonteCarloRun) -> dict[str, int]:
    """How often the run's hard first error equals the human verdict, over the traces
    with both. Computed from everyone's labels: for members who see them."""
    found = dict(TraceMC.objects.filter(run=run).values_list("trace_id", "first_error"))
    verdicts = Annotation.objects.filter(trace_id__in=list(found)).verdicts()
    both = agree = 0
    for trace_id, verdict in verdicts.items():
        if verdict.is_labelled:
            both += 1
            agree += verdict.first_error_step == found[trace_id]
    return {"both": both, "agree": agree}


@login_required
@require_GET
def mc_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership, run = jobs.get_job_for_user(
        request.user, slug, MonteCarloRun, run_id, allow=Membership.sees_model_scores
    )
    totals = montecarlo.run_totals(run)
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "totals": totals,
        "per_trace": totals["rollouts"] / totals["traces"] if totals["traces"] else None,
        "shards": shards.overview(run),
        "agreement": (
            agreement_with_humans(run)
            if run.status == JobStatus.DONE and membership.sees_all_labels()
            else None
        ),
    }
    template = "mc_run.html#mc-run-status" if request.htmx else "mc_run.html"
    return render(request, template, context)


@login_required
@require_GET
def trace_mc(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    """The trace page's Monte-Carlo section, which the page loads after itself (so the
    page's own queries stay those of the labels and scores); for the members who see
    model scores."""
    membership, trace = get_trace_for_user(
        request.user, slug, trace_id, allow=Membership.sees_model_scores
    )
    # ``membership`` too: the hiding tag asks it (it would look it up again).
    context = {
        "project": membership.project,
        "membership": membership,
        "trace": trace,
        **mc_context(trace),
    }
    return render(request, "mc_cells.html#mc-values", context)


def mc_context(trace: Trace) -> dict[str, object]:
    """What the ``mc-values`` partial needs: a row per Monte-Carlo run that labelled the
    trace, newest first."""
    rows = montecarlo.mc_rows_for_trace(trace)
    for row in rows:
        for cell in row["cells"]:
            cell["text"] = "not evaluated" if cell["mc"] is None else f"{cell['mc']:.2f}"
            cell["hue"] = "" if cell["mc"] is None else f"{cell['mc']:.3f}"
            if cell["progress"] is not None:
                cell["text"] += f", progress {cell['progress']:+.2f}"
        if row["run"].keep_rollouts:
            row["rollouts_kept"] = montecarlo.kept_rollouts(row["run"], trace)
    return {"mc_rows": rows, "mc_steps": range(trace.num_steps)}


mc_cancel, mc_retry = cancel_and_retry(MonteCarloRun, "mc-run", "run_id")
