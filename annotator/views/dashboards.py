"""A project's dashboard: its runs against the humans and each other. The page itself
holds filters and empty regions; each region is a partial that htmx loads after the
page, so a slow figure never blocks the rest. Every table also downloads as CSV
(``?format=csv`` on its partial's address)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from annotator import charts, dashboards, runs
from annotator.access import get_membership, get_trace_for_user
from annotator.filters import BadParameter, bad_parameter_is_400
from annotator.models import (
    JobStatus,
    LabelSet,
    Membership,
    MonteCarloRun,
    Project,
    ScoringRun,
    Trace,
    Verdict,
)
from scoring import metrics


def _figure(value: float | None, spec: str = ".1f") -> str:
    """The value as text; "" where it is not defined (the CSV's empty cell, the page's
    "—" with a title: ``UNDEFINED`` in ``dashboard.html``)."""
    return "" if value is None or math.isnan(value) else format(value, spec)


def _share(value: float | None, percent: bool) -> str:
    """A share in [0, 1] (AUROC, min on final step): in percent on the page, so each of
    its tables has one unit; as a fraction in the CSV, as ``scoring evaluate`` prints it."""
    if percent:
        return _figure(None if value is None else value * 100)
    return _figure(value, ".3f")


def _tau(request: HttpRequest) -> float | None:
    """The threshold asked for (``?tau=0.4``), or None for each run's own. Scores are
    probabilities, so a threshold outside [0, 1] is refused (400, the field named) rather
    than silently flagging every step or none."""
    raw = request.GET.get("tau", "").strip()
    if not raw:
        return None
    try:
        tau = float(raw)
    except ValueError:
        raise BadParameter("tau", "must be a number") from None
    if not 0.0 <= tau <= 1.0:  # also refuses nan and infinities
        raise BadParameter("tau", "must be between 0 and 1")
    return tau


def _csv(name: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response


def _member(request: HttpRequest, slug: str) -> Membership:
    """Reviewers and owners (the dashboard shows every label and every run), of a
    project the database can show (``dashboards.unavailable``); 404 otherwise."""
    membership = get_membership(request.user, slug, allow=Membership.may_review)
    reason = dashboards.unavailable(membership.project)
    if reason:
        raise Http404(reason)
    return membership


def _filters(request: HttpRequest, project: Project) -> dashboards.Filters:
    """The filters asked for; 404 for a label set of another project."""
    filters = dashboards.Filters.from_query(request.GET)
    if (
        filters.label_set
        and not LabelSet.objects.filter(pk=filters.label_set, project=project).exists()
    ):
        raise Http404("No such label set")
    return filters


def _finished_runs(membership: Membership, request: HttpRequest) -> list[ScoringRun]:
    """The project's finished runs, or those named by ``?run=ID`` (repeatable)."""
    runs = ScoringRun.objects.filter(project=membership.project, status=JobStatus.DONE)
    wanted = [r for r in request.GET.getlist("run") if r.isdigit()]
    if wanted:
        runs = runs.filter(pk__in=wanted)
    return list(runs.order_by("id"))


def _done_run(project: Project, run_id: int) -> ScoringRun:
    """The project's finished scoring run ``run_id``, or 404: dashboards show done runs only."""
    return get_object_or_404(ScoringRun, pk=run_id, project=project, status=JobStatus.DONE)


@login_required
@require_GET
@bad_parameter_is_400
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.may_review)
    project = membership.project
    reason = dashboards.unavailable(project)
    if reason:
        return render(
            request,
            "dashboard.html",
            {"project": project, "membership": membership, "unavailable": reason},
        )
    filters = _filters(request, project)
    # Checked here too, so a bad box answers 400 at once instead of in every partial.
    _tau(request)
    all_runs = list(
        ScoringRun.objects.filter(project=project, status=JobStatus.DONE).order_by("id")
    )
    selected = _finished_runs(membership, request)
    query = request.GET.urlencode()
    return render(
        request,
        "dashboard.html",
        {
            "project": project,
            "membership": membership,
            "filters": filters,
            "tau": request.GET.get("tau", ""),
            **Trace.objects.filter(project=project)
            .visible_to(membership)
            .facets("split", "generator", "source"),
            "label_sets": list(
                LabelSet.objects.filter(project=project).order_by("name").values_list("id", "name")
            ),
            "all_runs": all_runs,
            "selected_ids": {run.pk for run in selected},
            "runs": selected,
            "mc_runs": list(
                MonteCarloRun.objects.filter(project=project, status=JobStatus.DONE).order_by("id")
            ),
            "query": query,
            "region_timeout_ms": settings.DASHBOARD_REGION_TIMEOUT_S * 1000,
        },
    )


# -- the runs side by side ------------------------------------------------------------------


def _runs_table(membership: Membership, request: HttpRequest, percent: bool) -> list[list[str]]:
    filters = _filters(request, membership.project)
    tau = _tau(request)
    rows = []
    project = membership.project
    version = dashboards.labels_version(project)
    selected = _finished_runs(membership, request)

    def compute(missing: list[ScoringRun]) -> dict[int, dashboards.RunFigures]:
        return dashboards.runs_figures(missing, filters, tau, histogram=False)

    found = dashboards.cached_runs("run-table", selected, filters, version, compute, tau)
    for run in selected:
        figures = found[run.pk]
        average = figures.table.get("average")
        rows.append(
            [
                run.name,
                str(figures.labelled),
                f"{figures.tau:g}",
                _figure(average.acc_err if average else None),
                _figure(average.acc_cor if average else None),
                _figure(average.f1 if average else None),
                _figure(figures.best_tau, ".2f"),
                _figure(figures.best.f1 if figures.best else None),
                _share(figures.auroc_all, percent),
                _share(figures.min_on_final_all, percent),
            ]
        )
    human = dashboards.human_ceiling(membership.project, filters)
    if human is not None:
        # Its traces are the Agreement page's; its rates are ProcessBench's over ordered
        # pairs of verdicts, not the Agreement page's exact agreement over unordered ones.
        rows.append(
            [
                f"humans: one person's first error against another's ({human.pairs} ordered pairs)",
                str(human.traces),
                "",
                _figure(human.figures.acc_err),
                _figure(human.figures.acc_cor),
                _figure(human.figures.f1),
                "",
                "",
                "",
                "",
            ]
        )
    return rows


RUNS_HEADER = (
    "run",
    "labelled traces",
    "tau",
    "acc_err",
    "acc_cor",
    "F1",
    "best tau",
    "F1 at best tau",
    "step AUROC (mean of splits)",
    "min on final step",
)
# The page's headers for the CSV's identifiers, each with its legend (the header's title
# and the list under the table).
COLUMNS = {
    "run": ("Run", ""),
    "split": ("Split", ""),
    "labelled traces": ("Traces", "traces with a human verdict"),
    "n_err": ("Erroneous", "traces with a human first error"),
    "n_cor": ("Correct", "traces the humans found all correct"),
    "tau": ("Threshold τ", "a step scoring below it is predicted wrong (a score, 0 to 1)"),
    "acc_err": ("Acc. on erroneous", "erroneous traces whose first error is found exactly"),
    "acc_cor": ("Acc. on correct", "correct traces predicted all correct"),
    "F1": ("F1", "harmonic mean of the two accuracies"),
    "best tau": ("Best τ", "the threshold with the highest F1 over every labelled trace"),
    "F1 at best tau": ("F1 at best τ", "F1 at that threshold"),
    "AUROC": ("Step AUROC", "how well step scores separate correct from wrong steps"),
    "step AUROC (mean of splits)": (
        "Step AUROC",
        "how well step scores separate correct from wrong steps, mean of the splits",
    ),
    "min@last": ("Lowest on last step", "traces of 2+ steps whose lowest score is the last"),
    "min on final step": (
        "Lowest on last step",
        "traces of 2+ steps whose lowest score is the last",
    ),
}


def _columns(header: Sequence[str]) -> list[tuple[str, str]]:
    """(page header, legend) of each CSV column."""
    return [COLUMNS.get(name, (name, "")) for name in header]


@login_required
@require_GET
@bad_parameter_is_400
def dashboard_runs(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _member(request, slug)
    csv_format = request.GET.get("format") == "csv"
    rows = _runs_table(membership, request, percent=not csv_format)
    if csv_format:
        return _csv(f"{slug}-runs", RUNS_HEADER, rows)
    return render(
        request,
        "dashboard.html#runs-table",
        {
            "project": membership.project,
            "columns": _columns(RUNS_HEADER),
            "rows": rows,
            "query": request.GET.urlencode(),
        },
    )


# -- one run --------------------------------------------------------------------------------

PROCESSBENCH_HEADER = ("split", "n_err", "n_cor", "acc_err", "acc_cor", "F1", "AUROC", "min@last")


def _processbench_rows(figures: dashboards.RunFigures, percent: bool) -> list[list[str]]:
    return [
        [
            split,
            str(row.n_err),
            str(row.n_cor),
            _figure(row.acc_err),
            _figure(row.acc_cor),
            _figure(row.f1),
            "" if split == "average" else _share(figures.auroc[split], percent),
            "" if split == "average" else _share(figures.min_on_final[split], percent),
        ]
        for split, row in figures.table.items()
    ]


@login_required
@require_GET
@bad_parameter_is_400
def dashboard_run(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership = _member(request, slug)
    run = _done_run(membership.project, run_id)
    filters = _filters(request, membership.project)
    tau = _tau(request)
    version = dashboards.labels_version(membership.project)
    figures = dashboards.cached(
        "run", run, filters, version, lambda: dashboards.run_figures(run, filters, tau), tau
    )
    csv_format = request.GET.get("format") == "csv"
    rows = _processbench_rows(figures, percent=not csv_format)
    if csv_format:
        return _csv(f"{slug}-{run.name}-processbench", PROCESSBENCH_HEADER, rows)
    # Building plotly figures costs tens of ms each: their HTML is cached beside them.
    charts_html = (
        dashboards.cached(
            "charts", run, filters, version, lambda: dashboards.run_charts(figures), tau
        )
        if figures.labelled
        else []
    )
    return render(
        request,
        "dashboard.html#run-figures",
        {
            "project": membership.project,
            "run": run,
            "figures": figures,
            "columns": _columns(PROCESSBENCH_HEADER),
            "rows": rows,
            "table_id": f"processbench-{run.pk}",
            "charts": charts_html,
            "best_tau": _figure(figures.best_tau, ".2f"),
            "best_f1": _figure(figures.best.f1 if figures.best else None),
            "query": request.GET.urlencode(),
            "region_timeout_ms": settings.DASHBOARD_REGION_TIMEOUT_S * 1000,
        },
    )


# -- best-of-N ------------------------------------------------------------------------------

BON_RULES = (
    [f"bon_{how}" for how in metrics.AGGREGATIONS]
    + [f"weighted_vote_{how}" for how in metrics.AGGREGATIONS]
    + ["maj", "pass"]
    + [f"wrong_process_{how}" for how in metrics.AGGREGATIONS]
)


def _best_of_n_table(
    results: list[tuple[str, int, dict[str, float]]],
) -> tuple[tuple[str, ...], list[list[str]]]:
    """(header, rows) of ``(run name, problems, accuracy per rule)`` for the runs that
    have problems: one row per selection rule, one column per run (the table stays
    narrow)."""
    results = [result for result in results if result[1]]
    header = ("rule", *(name for name, _, _ in results))
    rows = []
    if results:
        rows = [["problems", *(str(n) for _, n, _ in results)]] + [
            [rule, *(_figure(table.get(rule)) for _, _, table in results)] for rule in BON_RULES
        ]
    return header, rows


@login_required
@require_GET
@bad_parameter_is_400
def dashboard_run_best_of_n(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """One run's best-of-N: the page loads one such partial per run, in parallel, so the
    heaviest partial is one run's query, not every run's."""
    membership = _member(request, slug)
    run = _done_run(membership.project, run_id)
    filters = _filters(request, membership.project)
    version = dashboards.labels_version(membership.project)
    # The key ``dashboards.warm`` fills at the run's end, and the all-runs table reads.
    problems, table = dashboards.cached(
        "best-of-n", run, filters, version, lambda: dashboards.best_of_n(run, filters)
    )
    header, rows = _best_of_n_table([(run.name, problems, table)])
    if request.GET.get("format") == "csv":
        return _csv(f"{slug}-{run.name}-best-of-n", header, rows)
    return render(
        request,
        "dashboard.html#run-best-of-n",
        {
            "project": membership.project,
            "run": run,
            "header": header,
            "rows": rows,
            "query": request.GET.urlencode(),
        },
    )


@login_required
@require_GET
@bad_parameter_is_400
def dashboard_best_of_n(request: HttpRequest, slug: str) -> HttpResponse:
    """Every selected run's best-of-N in one CSV (the page's all-runs download; the page
    itself shows one partial per run): the runs not cached yet in one query."""
    membership = _member(request, slug)
    filters = _filters(request, membership.project)
    project = membership.project
    version = dashboards.labels_version(project)
    selected = _finished_runs(membership, request)

    def compute(missing: list[ScoringRun]) -> dict[int, tuple[int, dict[str, float]]]:
        return dashboards.runs_best_of_n(missing, filters)

    found = dashboards.cached_runs("best-of-n", selected, filters, version, compute)
    header, rows = _best_of_n_table([(run.name, *found[run.pk]) for run in selected])
    return _csv(f"{slug}-best-of-n", header, rows)


# -- annotation side and disagreements -------------------------------------------------------


@login_required
@require_GET
def dashboard_annotation(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _member(request, slug)
    days = dashboards.labels_per_day(membership.project)
    if request.GET.get("format") == "csv":
        return _csv(f"{slug}-labels-per-day", ("day", "labels"), days)
    return render(
        request,
        "dashboard.html#annotation",
        {
            "project": membership.project,
            "days": days,
            "chart": charts.embed(charts.labels_over_time(days), "labels-per-day") if days else "",
        },
    )


@login_required
@require_GET
@bad_parameter_is_400
def dashboard_disagreements(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """Where the run disagrees with the humans, or with another run (``?against=ID``)."""
    membership = _member(request, slug)
    project = membership.project
    run = _done_run(project, run_id)
    filters = _filters(request, project)
    against = request.GET.get("against", "")
    if against:
        other = _done_run(project, int(against) if against.isdigit() else 0)
        rows = dashboards.run_pair_disagreements(run, other, filters)
        columns = (f"{run.name} first error", f"{other.name} first error", "steps apart")
        name, target = f"{run.name}-vs-{other.name}", f"disagreements-{run.pk}-{other.pk}"
        note = "Traces both runs scored, the predicted first errors furthest apart first."
    else:
        rows = dashboards.disagreements(run, filters)
        columns = ("human first error", f"{run.name} first error", "strength")
        name, target = run.name, f"disagreements-{run.pk}"
        note = "Strength: how far the run's score is on the wrong side of its threshold."
    return _disagreement_list(request, project, rows, columns, name, target, note)


def _disagreement_list(
    request: HttpRequest,
    project: Project,
    rows: list[tuple],
    columns: Sequence[str],
    name: str,
    target: str,
    note: str,
) -> HttpResponse:
    if request.GET.get("format") == "csv":
        return _csv(
            f"{project.slug}-{name}-disagreements", ("trace", "external id", *columns), rows
        )
    query = request.GET.copy()
    query["format"] = "csv"
    return render(
        request,
        "dashboard.html#disagreements",
        {
            "project": project,
            "rows": rows,
            "columns": columns,
            "target": target,
            "note": note,
            "csv_url": f"{request.path}?{query.urlencode()}",
        },
    )


@login_required
@require_GET
@bad_parameter_is_400
def dashboard_mc_disagreements(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """Where a finished Monte-Carlo run's first error differs from the humans'."""
    membership = _member(request, slug)
    project = membership.project
    mc_run = get_object_or_404(MonteCarloRun, pk=run_id, project=project, status=JobStatus.DONE)
    rows = dashboards.mc_disagreements(mc_run, _filters(request, project))
    columns = ("human first error", f"{mc_run.name} (Monte-Carlo) first error", "steps apart")
    note = "Traces with a human verdict and Monte-Carlo labels, furthest apart first."
    return _disagreement_list(
        request, project, rows, columns, f"mc-{mc_run.name}", f"mc-disagreements-{mc_run.pk}", note
    )


# -- the trace page's chart -----------------------------------------------------------------


@login_required
@require_GET
def trace_score_chart(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    """The trace's step scores per run with the human first error marked, and for
    reviewers the previous and next trace where each run disagrees with the humans."""
    membership, trace = get_trace_for_user(
        request.user, slug, trace_id, allow=Membership.sees_model_scores
    )
    project_runs = list(
        ScoringRun.objects.filter(project=membership.project).only("id", "name").order_by("id")
    )
    found = runs.scores_by_trace(project_runs, trace) if project_runs else {}
    scored = [run for run in project_runs if run.pk in found]
    human = Verdict.resolve(
        trace.annotations.latest_versions().visible_to(membership)
    ).first_error_step
    neighbours = []
    if membership.sees_all_labels() and not dashboards.unavailable(membership.project):
        around = dashboards.neighbour_disagreements(membership.project, scored, trace.pk)
        neighbours = [(run, *around[run.pk]) for run in scored]
    chart = ""
    if scored:
        fig = charts.trace_scores({run.name: found[run.pk] for run in scored}, human)
        chart = charts.embed(fig, "trace-score-chart-plot")
    return render(
        request,
        "dashboard_trace_chart.html",
        {"project": membership.project, "trace": trace, "chart": chart, "neighbours": neighbours},
    )
