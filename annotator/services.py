"""Project operations shared by the HTML views and the API."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from annotator.hiding import visible_traces
from annotator.models import Annotation, Membership, Project, Trace


def filter_traces(membership: Membership, params) -> QuerySet[Trace]:
    """The project's traces the member may see, narrowed by the ``split``,
    ``generator`` and ``labelled`` query parameters (``labelled`` is ``yes`` or ``no``)."""
    traces = visible_traces(
        membership,
        Trace.objects.filter(project=membership.project).select_related("problem").order_by("id"),
    )
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
    """The trace's latest labels the member may see: all, or only their own."""
    annotations = (
        trace.annotations.filter(is_latest=True).select_related("annotator").order_by("id")
    )
    if not membership.sees_all_labels():
        annotations = annotations.filter(annotator=membership.user)
    return annotations
