"""Sampling and verification runs: start them, follow them (solutions, verifications and
tokens so far), cancel or retry them.

Starting a run is for project owners who are also staff
(``Membership.may_run_worker_jobs``), as for Monte-Carlo runs: the completer spec makes
the workers call a URL, load a model or read a folder. Members who see model scores see
the runs; owners cancel and retry them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from annotator import jobs, sampling, shards, solve_or_verify, verification
from annotator.access import get_membership
from annotator.models import (
    REFERENCE_GENERATOR,
    JobStatus,
    Membership,
    SamplingRun,
    ScoringRun,
    Trace,
    VerificationRun,
    VerifierKind,
)
from annotator.views.jobs import cancel_and_retry, shard_traces_field, start_from_form

COMPLETER_HELP = (
    "openai:http://host:8000/v1 (a vLLM server), hf:MODEL (a hub id, or a path inside the "
    "model directory), or sc-genrm:DIR (import the reference's files from a folder inside it)"
)


class SamplingForm(forms.Form):
    completer = forms.CharField(max_length=500, help_text=COMPLETER_HELP)
    model = forms.CharField(max_length=500, required=False, help_text="The served model's name.")
    n = forms.IntegerField(
        min_value=1, max_value=sampling.MAX_N, initial=8, label="Solutions per problem"
    )
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0.7)
    top_p = forms.FloatField(min_value=0, max_value=1, initial=0.95)
    max_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=1024)
    seed = forms.IntegerField(required=False, min_value=0)
    split = forms.CharField(
        max_length=64, required=False, help_text="Only the problems of this split's traces."
    )
    generator = forms.CharField(
        max_length=200, required=False, help_text="The solutions' generator (default: the model)."
    )
    labelling_queue = forms.BooleanField(
        required=False,
        label="Add to the labelling queue",
        help_text="Off: the solutions are for the curves and stay out of the queue "
        "(each can still be labelled from its trace page).",
    )
    name = forms.SlugField(max_length=100, required=False)
    shard_traces = shard_traces_field("problems")


class VerificationForm(forms.Form):
    sampling_run = forms.TypedChoiceField(coerce=int, label="Solutions of")
    verifier = forms.ChoiceField(choices=VerifierKind.choices)
    completer = forms.CharField(max_length=500, help_text=COMPLETER_HELP)
    model = forms.CharField(max_length=500, required=False, help_text="The served model's name.")
    v = forms.IntegerField(
        min_value=1, max_value=verification.MAX_V, initial=4, label="Verifications per solution"
    )
    per_problem = forms.IntegerField(
        min_value=0,
        initial=0,
        label="Solutions verified per problem",
        help_text="The first ones; 0: all.",
    )
    temperature = forms.FloatField(
        min_value=0,
        max_value=2,
        required=False,
        help_text="Blank: the verifier's reference setting.",
    )
    top_p = forms.FloatField(min_value=0, max_value=1, required=False)
    max_tokens = forms.IntegerField(min_value=1, max_value=32768, required=False)
    name = forms.SlugField(max_length=100, required=False)
    shard_traces = shard_traces_field("solutions")

    def __init__(self, *args: Any, runs: list[SamplingRun], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sampling_run"].choices = [(run.pk, run.name) for run in runs]


def _page(
    request: HttpRequest,
    membership: Membership,
    sampling_form: SamplingForm | None = None,
    verification_form: VerificationForm | None = None,
    status: int = 200,
) -> HttpResponse:
    project = membership.project
    may_start = membership.may_run_worker_jobs()
    runs = list(project.sampling_runs.order_by("-id"))
    return render(
        request,
        "solve_runs.html",
        {
            "project": project,
            "membership": membership,
            "sampling_runs": runs,
            "verification_runs": project.verification_runs.select_related("sampling_run").order_by(
                "-id"
            ),
            "sampling_form": (sampling_form or SamplingForm()) if may_start else None,
            "verification_form": (verification_form or VerificationForm(runs=runs))
            if may_start and runs
            else None,
        },
        status=status,
    )


def _starter(request: HttpRequest, slug: str) -> Membership:
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    if request.method == "POST" and not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start sampling and verification runs")
    return membership


@login_required
@require_http_methods(["GET", "POST"])
def solve_runs(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _starter(request, slug)
    if request.method == "GET":
        return _page(request, membership)
    form = SamplingForm(request.POST)
    if not form.is_valid():
        return _page(request, membership, sampling_form=form, status=400)
    data = form.cleaned_data
    options = {k: data[k] for k in ("temperature", "top_p", "max_tokens")}
    if data["seed"] is not None:
        options["seed"] = data["seed"]
    if data["completer"].startswith(sampling.IMPORT_PREFIX):
        options = {}  # an import samples nothing
    run, status = start_from_form(
        form,
        lambda: sampling.start_sampling_run(
            membership.project,
            request.user,
            completer=data["completer"],
            model=data["model"],
            n=data["n"],
            options=options,
            selection={"split": data["split"]},
            generator=data["generator"],
            name=data["name"],
            labelling_queue=data["labelling_queue"],
            shard_traces=data["shard_traces"],
        ),
    )
    if run is None:
        return _page(request, membership, sampling_form=form, status=status)
    return redirect("sampling-run", slug=slug, run_id=run.pk)


@login_required
@require_http_methods(["POST"])
def start_verification(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _starter(request, slug)
    runs = list(membership.project.sampling_runs.order_by("-id"))
    form = VerificationForm(request.POST, runs=runs)
    if not form.is_valid():
        return _page(request, membership, verification_form=form, status=400)
    data = form.cleaned_data
    options = {k: data[k] for k in ("temperature", "top_p", "max_tokens") if data[k] is not None}
    sampling_run = next(run for run in runs if run.pk == data["sampling_run"])
    run, status = start_from_form(
        form,
        lambda: verification.start_verification_run(
            membership.project,
            request.user,
            sampling_run=sampling_run,
            verifier=data["verifier"],
            completer=data["completer"],
            model=data["model"],
            v=data["v"],
            per_problem=data["per_problem"],
            options=options,
            name=data["name"],
            shard_traces=data["shard_traces"],
        ),
    )
    if run is None:
        return _page(request, membership, verification_form=form, status=status)
    return redirect("verification-run", slug=slug, run_id=run.pk)


@login_required
@require_GET
def sampling_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership, run = jobs.get_job_for_user(
        request.user, slug, SamplingRun, run_id, allow=Membership.sees_model_scores
    )
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "totals": sampling.run_totals(run),
        "verification_runs": run.verification_runs.order_by("-id"),
        "shards": shards.overview(run),
    }
    template = "sampling_run.html#sampling-run-status" if request.htmx else "sampling_run.html"
    return render(request, template, context)


@login_required
@require_GET
def verification_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership, run = jobs.get_job_for_user(
        request.user,
        slug,
        VerificationRun.objects.select_related("sampling_run"),
        run_id,
        allow=Membership.sees_model_scores,
    )
    totals = verification.run_totals(run)
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "totals": totals,
        "shards": shards.overview(run),
        "per_verification": totals["tokens"] / totals["verifications"]
        if totals["verifications"]
        else None,
    }
    template = (
        "verification_run.html#verification-run-status" if request.htmx else "verification_run.html"
    )
    return render(request, template, context)


sampling_cancel, sampling_retry = cancel_and_retry(SamplingRun, "sampling-run", "run_id")
verification_cancel, verification_retry = cancel_and_retry(
    VerificationRun, "verification-run", "run_id"
)


# -- the "Solve or verify" page ----------------------------------------------------------


def _choice(request: HttpRequest, key: str, queryset) -> Any:
    """The project's row named by ``?key=id`` (None when blank); 400 for anything else."""
    raw = request.GET.get(key, "")
    if not raw:
        return None
    try:
        return queryset.get(pk=int(raw))
    except (ValueError, queryset.model.DoesNotExist):
        raise BadRequest(f"{key}: no such run") from None


def _number(request: HttpRequest, key: str, low: float, high: float) -> float | None:
    raw = request.GET.get(key, "")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{key} must be a number") from None
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low:g} and {high:g}")
    return value


def _selection(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    from scoring.curves import RULES

    project = membership.project
    sampling_run = _choice(request, "sampling", project.sampling_runs.all())
    source = request.GET.get("source", "")
    if source and sampling_run is not None:
        raise BadRequest("choose a sampling run or a source of traces, not both")
    check = _choice(request, "verification", project.verification_runs.all())
    if check is not None and (sampling_run is None or check.sampling_run_id != sampling_run.pk):
        raise BadRequest("verification: it does not verify that sampling run")
    scoring_run = _choice(
        request, "scoring", ScoringRun.objects.filter(project=project, status=JobStatus.DONE)
    )
    rule = request.GET.get("rule") or "hybrid"
    aggregate = request.GET.get("aggregate") or "min_score"
    if rule not in RULES:
        raise BadRequest(f"rule is one of {RULES}")
    if aggregate not in solve_or_verify.AGGREGATES:
        raise BadRequest(f"aggregate is one of {solve_or_verify.AGGREGATES}")
    return {
        "sampling_run": sampling_run,
        "source": source,
        "traces": Trace.objects.filter(project=project, source=source)
        .visible_to(membership)
        .exclude(generator=REFERENCE_GENERATOR)
        if source
        else None,
        "verification_run": check,
        "scoring_run": scoring_run,
        "lam": _number(request, "lam", 0, 1000),
        "prm_lambda": _number(request, "prm_lambda", 0, 1000),
        "rule": rule,
        "aggregate": aggregate,
    }


def _default_query(membership: Membership) -> dict[str, int | str] | None:
    """What a first visit shows: the latest finished sampling run with its latest finished
    verification run, else the imported source with the most solutions per problem (two
    or more: best-of-N files) with the latest finished scoring run that scored it; None
    when there is neither."""
    project = membership.project
    run = project.sampling_runs.filter(status=JobStatus.DONE).order_by("-id").first()
    if run is not None:
        query: dict[str, int | str] = {"sampling": run.pk}
        check = run.verification_runs.filter(status=JobStatus.DONE).order_by("-id").first()
        if check is not None:
            query["verification"] = check.pk
        return query
    traces = (
        Trace.objects.filter(project=project)
        .visible_to(membership)
        .exclude(generator=REFERENCE_GENERATOR)
    )
    by_source = (
        traces.order_by()
        .values("source")
        .annotate(solutions=Count("id"), problems=Count("problem", distinct=True))
    )
    best = max(
        (row for row in by_source if row["solutions"] >= 2 * row["problems"]),
        key=lambda row: (row["solutions"] / row["problems"], row["source"]),
        default=None,
    )
    if best is None:
        return None
    query = {"source": best["source"]}
    first = traces.filter(source=best["source"]).order_by("problem_id", "id").first()
    scoring = (
        ScoringRun.objects.filter(project=project, status=JobStatus.DONE, trace_scores__trace=first)
        .order_by("-id")
        .first()
    )
    if scoring is not None:
        query["scoring"] = scoring.pk
    return query


@login_required
@require_GET
def solve_or_verify_page(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    project = membership.project
    if not request.GET:
        query = _default_query(membership)
        if query is not None:
            return redirect(f"{reverse('solve-or-verify', args=[slug])}?{urlencode(query)}")
    chosen = _selection(request, membership)
    return render(
        request,
        "solve_or_verify.html",
        {
            "project": project,
            "membership": membership,
            "sampling_runs": project.sampling_runs.order_by("-id"),
            "verification_runs": project.verification_runs.select_related("sampling_run").order_by(
                "-id"
            ),
            "scoring_runs": ScoringRun.objects.filter(
                project=project, status=JobStatus.DONE
            ).order_by("-id"),
            "sources": Trace.objects.filter(project=project)
            .visible_to(membership)
            .facets("source")["sources"],
            "chosen": chosen,
            "query": request.GET.urlencode(),
        },
    )


@login_required
@require_GET
def solve_or_verify_figure(request: HttpRequest, slug: str) -> HttpResponse:
    """The page's figure, table and crossover (an htmx partial)."""
    from annotator.charts import compute_curves, embed

    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    chosen = _selection(request, membership)
    context: dict[str, Any] = {"project": membership.project, "membership": membership}
    if chosen["sampling_run"] is None and chosen["traces"] is None:
        raise BadRequest("sampling: choose a sampling run or a source of traces")
    if chosen["traces"] is not None and chosen["verification_run"] is not None:
        raise BadRequest("verification: imported traces have no verification run")
    try:
        found = solve_or_verify.figures(
            chosen["sampling_run"],
            chosen["verification_run"],
            chosen["scoring_run"],
            traces=chosen["traces"],
            lam=chosen["lam"],
            rule=chosen["rule"],
            aggregate=chosen["aggregate"],
            prm_lambda=1.0 if chosen["prm_lambda"] is None else chosen["prm_lambda"],
        )
    except ValueError as exc:
        context["problem"] = str(exc)
        return render(request, "solve_or_verify.html#solve-figure", context)
    context.update(
        {
            "figures": found,
            "chart": embed(compute_curves(found.curves, found.crossover), "solve-chart"),
            "multiple": found.crossover / found.sc_compute if found.crossover else None,
        }
    )
    return render(request, "solve_or_verify.html#solve-figure", context)
