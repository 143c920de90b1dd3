"""Project operations shared by the HTML views and the API."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, QuerySet

from annotator.access import can_see_all_labels
from annotator.models import Annotation, ImportJob, Membership, Project, Trace


def filter_traces(project: Project, params) -> QuerySet[Trace]:
    """The project's traces narrowed by the ``split``, ``generator`` and ``labelled``
    query parameters (``labelled`` is ``yes`` or ``no``)."""
    traces = Trace.objects.filter(project=project).select_related("problem").order_by("id")
    if split := params.get("split"):
        traces = traces.filter(split=split)
    if generator := params.get("generator"):
        traces = traces.filter(generator=generator)
    labelled = params.get("labelled")
    if labelled == "yes":
        traces = traces.labelled()
    elif labelled == "no":
        traces = traces.unlabelled()
    return traces


def facet_values(project: Project) -> dict[str, list[str]]:
    """Distinct splits and generators, for the filter menus."""
    traces = Trace.objects.filter(project=project)
    return {
        "splits": list(
            traces.order_by().values_list("split", flat=True).distinct().order_by("split")
        ),
        "generators": list(
            traces.order_by().values_list("generator", flat=True).distinct().order_by("generator")
        ),
    }


def label_counts(trace_ids: list[int]) -> dict[int, int]:
    rows = (
        Annotation.objects.filter(trace_id__in=trace_ids, is_latest=True)
        .values("trace_id")
        .annotate(n=Count("id"))
    )
    return {row["trace_id"]: row["n"] for row in rows}


def visible_annotations(membership: Membership, trace: Trace) -> QuerySet[Annotation]:
    annotations = (
        trace.annotations.filter(is_latest=True).select_related("annotator").order_by("id")
    )
    if not can_see_all_labels(membership):
        annotations = annotations.filter(annotator=membership.user)
    return annotations


def start_import(
    project: Project,
    user,
    upload: UploadedFile,
    *,
    fmt: str = "auto",
    split: str = "",
    step_splitter: str = "paragraphs",
) -> ImportJob:
    """Save the upload and queue an import job; the worker picks it up after commit."""
    from annotator.tasks import run_import

    upload_dir = Path(settings.UPLOAD_DIR)
    upload_dir.mkdir(parents=True, exist_ok=True)
    name = Path(upload.name or "upload").name
    path = upload_dir / f"{uuid.uuid4().hex}-{name}"
    with open(path, "wb") as fh:
        for chunk in upload.chunks():
            fh.write(chunk)
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project,
            created_by=user,
            file_name=name,
            path=str(path),
            format=fmt,
            options={"split": split, "step_splitter": step_splitter},
        )
        run_import.delay_on_commit(job.pk)
    return job
