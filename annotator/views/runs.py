"""Scoring runs and scorers: start a run, follow it, cancel or retry it, import a score
file, register a scorer, and the per-step score cells that the trace, Label and review
pages show beside the human labels."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotator import jobs, runs, shards
from annotator.access import get_membership
from annotator.models import (
    JobStatus,
    Membership,
    Project,
    ScoreImportJob,
    Scorer,
    ScoringRun,
    Trace,
)
from annotator.uploads import upload_too_large
from annotator.views.jobs import cancel_and_retry, job_page, shard_traces_field, start_from_form
from scoring import metrics
from scoring.types import NO_PREDICTION

LATEST_RUNS = 5

LABELLED_CHOICES = [("", "labelled or not"), ("yes", "labelled"), ("no", "not labelled")]


# -- score cells (trace, Label and review pages) --------------------------------------------


@dataclass(frozen=True)
class ScoreCell:
    index: int
    text: str  # the score to 3 decimals, or "nan": the scorer gave no verdict
    hue: str  # the score clamped to [0, 1] for the colour scale; "" for NaN
    predicted_first_error: bool
    human_first_error: bool


@dataclass(frozen=True)
class ScoreRow:
    run: ScoringRun
    cells: list[ScoreCell]
    predicted: int  # the run's first error at its threshold: -1 none, NO_PREDICTION


def score_text(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def score_context(
    membership: Membership, trace: Trace, human_first_error: int | None
) -> dict[str, object]:
    """What ``score_cells.html`` needs for one trace: a row of cells per run of the
    project that scored it. Two queries whatever the number of runs and steps, none
    for a member who may not see model scores."""
    if not membership.sees_model_scores():
        return {"score_rows": []}
    project_runs = list(
        ScoringRun.objects.filter(project=membership.project)
        .only("id", "name", "threshold")
        .order_by("id")
    )
    found = runs.scores_by_trace(project_runs, trace) if project_runs else {}
    rows = []
    for run in project_runs:
        scores = found.get(run.pk)
        if not scores:
            continue
        predicted = metrics.first_error(scores, run.threshold)
        cells = [
            ScoreCell(
                index=index,
                text=score_text(score),
                hue="" if math.isnan(score) else f"{min(1.0, max(0.0, score)):.3f}",
                predicted_first_error=index == predicted,
                human_first_error=index == human_first_error,
            )
            for index, score in enumerate(scores)
        ]
        rows.append(ScoreRow(run=run, cells=cells, predicted=predicted))
    return {
        "score_rows": rows,
        "score_steps": range(trace.num_steps),
        "human_first_error": human_first_error,
        "no_prediction": NO_PREDICTION,
    }


# -- forms ----------------------------------------------------------------------------------


class ScoreForm(forms.Form):
    """*Score traces*: a scorer over a selection of the project's traces."""

    scorer = forms.ModelChoiceField(queryset=Scorer.objects.none(), empty_label=None)
    split = forms.ChoiceField(required=False)
    generator = forms.ChoiceField(required=False)
    source = forms.ChoiceField(required=False)
    labelled = forms.ChoiceField(choices=LABELLED_CHOICES, required=False)
    ids = forms.CharField(
        required=False,
        max_length=100_000,
        label="Trace ids",
        help_text="Optional: only these traces (the numbers in their page addresses).",
    )
    name = forms.SlugField(
        required=False, max_length=100, help_text="Leave empty to name it after the scorer."
    )
    shard_traces = shard_traces_field()

    def __init__(self, project: Project, *args, facets: dict | None = None, **kwargs) -> None:
        """``facets``: what ``TraceQuerySet.facets`` gave the page already (its
        ``splits`` and ``generators``), saving those queries. The form is for owners,
        who see every trace, so the menus list every value."""
        super().__init__(*args, **kwargs)
        # Another project's scorer is neither offered nor accepted.
        self.fields["scorer"].queryset = Scorer.objects.usable_in(project)
        facets = dict(facets or {})
        missing = [f for f in ("split", "generator", "source") if f"{f}s" not in facets]
        if missing:
            facets.update(Trace.objects.filter(project=project).facets(*missing))
        for field in ("split", "generator", "source"):
            choices = [(v, v or "(none)") for v in facets[f"{field}s"]]
            self.fields[field].choices = [("", "all"), *choices]

    def selection(self) -> dict[str, str]:
        return {key: self.cleaned_data[key] for key in jobs.SELECTION_KEYS}


class ImportScoresForm(forms.Form):
    file = forms.FileField(
        help_text='JSONL from "python -m scoring score", or {"id": ..., "scores": [...]} per line.'
    )
    name = forms.SlugField(max_length=100, label="Run name")

    def __init__(self, *args, **kwargs) -> None:
        # Own element ids: it shares the runs page with the *Score traces* form.
        kwargs.setdefault("auto_id", "import_%s")
        super().__init__(*args, **kwargs)


class ScorerForm(forms.ModelForm):
    """Registering a scorer; ``Scorer.clean`` (run by the form's model validation)
    checks the adapter, the model and the options, and its errors land on the fields."""

    adapter = forms.ChoiceField(choices=[])
    options = forms.JSONField(
        required=False,
        help_text='A JSON object, e.g. {"device": "cpu", "threshold": 0.5}.',
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    class Meta:
        model = Scorer
        fields = ["name", "adapter", "model", "revision", "options"]

    def __init__(self, *args, **kwargs) -> None:
        from scoring.adapters import ADAPTERS

        super().__init__(*args, **kwargs)
        self.fields["adapter"].choices = [(a, a) for a in sorted(ADAPTERS)]
        # An unbound box would show the JSON of "no options yet", ``null``: start it as
        # the empty object the model stores instead.
        if self.initial.get("options") is None:
            self.initial["options"] = {}

    def clean_options(self) -> object:
        return {} if self.cleaned_data["options"] is None else self.cleaned_data["options"]


# -- pages ----------------------------------------------------------------------------------


def _runs_page(
    request: HttpRequest,
    membership: Membership,
    *,
    score_form: ScoreForm | None = None,
    import_form: ImportScoresForm | None = None,
    status: int = 200,
) -> HttpResponse:
    project = membership.project
    context: dict[str, object] = {
        "project": project,
        "membership": membership,
        "runs": project.scoring_runs.select_related("scorer").order_by("-id"),
    }
    if membership.may_manage():
        context["score_form"] = score_form or ScoreForm(project)
        context["import_form"] = import_form or ImportScoresForm()
    return render(request, "runs.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def run_list(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's runs; owners start one here (the *Score traces* form posts here)."""
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    if request.method == "GET":
        return _runs_page(request, membership)
    if not membership.may_manage():
        raise PermissionDenied("only the project's owners start runs")
    project = membership.project
    form = ScoreForm(project, request.POST)
    if not form.is_valid():
        return _runs_page(request, membership, score_form=form, status=400)
    run, status = start_from_form(
        form,
        lambda: runs.start_run(
            project,
            form.cleaned_data["scorer"],
            request.user,
            selection=form.selection(),
            name=form.cleaned_data["name"],
            shard_traces=form.cleaned_data["shard_traces"],
        ),
    )
    if run is None:
        return _runs_page(request, membership, score_form=form, status=status)
    return redirect("run", slug=project.slug, run_id=run.pk)


@login_required
@require_POST
def run_import(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue a score file for import as a run (``runs.start_score_import``); owners
    follow the job on its page."""
    membership = get_membership(request.user, slug, allow=Membership.may_manage)
    if too_large := upload_too_large(request):  # asked before the body is read
        messages.error(request, too_large)
        return _runs_page(request, membership, status=413)
    form = ImportScoresForm(request.POST, request.FILES)
    if not form.is_valid():
        return _runs_page(request, membership, import_form=form, status=400)
    data = form.cleaned_data
    job, status = start_from_form(
        form,
        lambda: runs.start_score_import(
            membership.project, request.user, data["file"], name=data["name"]
        ),
    )
    if job is None:
        return _runs_page(request, membership, import_form=form, status=status)
    return redirect("score-import", slug=membership.project.slug, job_id=job.pk)


# A score import's progress, its error naming the file's line, or its run.
score_import_job = job_page(ScoreImportJob, "score_import_job.html")
score_import_cancel, score_import_retry = cancel_and_retry(ScoreImportJob, "score-import", "job_id")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _figure(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.1f}"


@login_required
@require_GET
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership, run = jobs.get_job_for_user(
        request.user,
        slug,
        ScoringRun.objects.select_related("scorer", "created_by"),
        run_id,
        allow=Membership.sees_model_scores,
    )
    table = []
    # Its per-split counts come from everyone's labels: for members who see them.
    if run.status == JobStatus.DONE and membership.sees_all_labels():
        table = [
            {
                "split": row.split,
                "acc_err": _figure(row.result.acc_err),
                "acc_cor": _figure(row.result.acc_cor),
                "f1": _figure(row.result.f1),
                "n_err": row.result.n_err,
                "n_cor": row.result.n_cor,
            }
            for row in runs.processbench_rows(run)
        ]
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "options": json.dumps(run.provenance.get("options") or {}, sort_keys=True),
        "eta": _duration(run.eta_seconds),
        "table": table,
        "shards": shards.overview(run),
    }
    template = "run.html#run-status" if request.htmx else "run.html"
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def scorer_list(request: HttpRequest) -> HttpResponse:
    """The scorers the user may see (site-wide ones and their projects'); staff see
    every one and register new, site-wide ones (a scorer decides what code and weights
    the workers load)."""
    form = None
    status = 200
    if request.user.is_staff:
        form = ScorerForm(request.POST or None)
        if request.method == "POST":
            if form.is_valid():
                scorer = form.save(commit=False)
                scorer.created_by = request.user
                scorer.save()
                messages.success(request, f"Registered scorer {scorer.name}.")
                return redirect("scorers")
            status = 400
    elif request.method == "POST":
        raise PermissionDenied("only staff register scorers")
    return render(
        request,
        "scorers.html",
        {
            "scorers": Scorer.objects.visible_to(request.user).select_related("project"),
            "form": form,
        },
        status=status,
    )


run_cancel, run_retry = cancel_and_retry(ScoringRun, "run", "run_id")
