"""HTML views. Each starts with an access helper that returns the object or 404s."""

from __future__ import annotations

import tempfile

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotator.access import MANAGERS, get_membership, get_trace_for_user
from annotator.exporting import (
    EXPORT_FORMATS,
    LABEL_SOURCES,
    iter_export,
    iter_jsonl_lines,
    write_export,
)
from annotator.formats import FORMATS
from annotator.models import ImportJob, Project, Role
from annotator.services import (
    facet_values,
    filter_traces,
    label_counts,
    start_import,
    visible_annotations,
)
from scoring.steps import SPLITTERS

TRACES_PER_PAGE = 50


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = Project.objects.filter(memberships__user=request.user).order_by("name")
    return render(request, "home.html", {"projects": projects})


@login_required
@require_GET
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    project = membership.project
    traces = filter_traces(project, request.GET)
    page = Paginator(traces, TRACES_PER_PAGE).get_page(request.GET.get("page"))
    counts = label_counts([t.id for t in page.object_list])
    rows = [(trace, counts.get(trace.id, 0)) for trace in page.object_list]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "project": project,
        "membership": membership,
        "is_manager": membership.role in MANAGERS,
        "page": page,
        "rows": rows,
        "filters": request.GET,
        "query": query.urlencode(),
        "export_formats": EXPORT_FORMATS,
        "label_sources": LABEL_SOURCES,
        **facet_values(project),
    }
    template = "project.html#trace-table" if request.htmx else "project.html"
    return render(request, template, context)


@login_required
@require_GET
def trace_detail(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    steps = list(trace.steps.order_by("index"))
    annotations = list(visible_annotations(membership, trace))
    for annotation in annotations:
        ratings = annotation.step_ratings or []
        annotation.rating_by_step = [
            ratings[i] if i < len(ratings) else None for i in range(len(steps))
        ]
    return render(
        request,
        "trace.html",
        {
            "project": membership.project,
            "membership": membership,
            "trace": trace,
            "steps": steps,
            "annotations": annotations,
            "show_reference": membership.project.show_reference_answer
            or membership.role in MANAGERS,
        },
    )


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(
        choices=[("auto", "Detect from the first record")] + [(f, f) for f in FORMATS]
    )
    split = forms.CharField(
        required=False,
        max_length=64,
        help_text="Leave empty to take it from the records or file name.",
    )
    step_splitter = forms.ChoiceField(
        choices=[(s, s) for s in SPLITTERS],
        initial="paragraphs",
        help_text="For plain JSONL solutions given as one string.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_traces(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = start_import(
            project,
            request.user,
            form.cleaned_data["file"],
            fmt=form.cleaned_data["format"],
            split=form.cleaned_data["split"],
            step_splitter=form.cleaned_data["step_splitter"],
        )
        return redirect("import-job", slug=project.slug, job_id=job.pk)
    jobs = project.import_jobs.all()[:10]
    return render(request, "import.html", {"project": project, "form": form, "jobs": jobs})


@login_required
@require_GET
def import_job(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    job = get_object_or_404(ImportJob, project=project, pk=job_id)
    template = "import_job.html#job-status" if request.htmx else "import_job.html"
    return render(request, template, {"project": project, "job": job})


@login_required
@require_GET
def export_dataset(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_membership(request.user, slug, roles=MANAGERS).project
    fmt = request.GET.get("format", "jsonl")
    labels = request.GET.get("labels", "human")
    if fmt not in EXPORT_FORMATS or labels not in LABEL_SOURCES:
        return HttpResponse(
            f"format must be one of {', '.join(EXPORT_FORMATS)}; labels one of {', '.join(LABEL_SOURCES)}",
            status=400,
            content_type="text/plain",
        )
    split = request.GET.get("split") or None
    stem = f"{project.slug}-{fmt}" + (f"-{split}" if split else "")
    if request.GET.get("file") == "parquet":
        # Parquet needs a seekable file; spool to a temporary file that closes with the response.
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it)
        write_export(project, fmt, tmp, split=split, labels=labels, parquet=True)
        tmp.seek(0)
        return FileResponse(tmp, as_attachment=True, filename=f"{stem}.parquet")
    records = iter_export(project, fmt, split=split, labels=labels)
    response = StreamingHttpResponse(iter_jsonl_lines(records), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{stem}.jsonl"'
    return response
