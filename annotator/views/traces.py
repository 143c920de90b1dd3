"""One trace: its page, the history of its labels, and marking it a gold question."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotator import review
from annotator.access import get_trace_for_user
from annotator.labelling import LabelError, reviewer_label
from annotator.models import Membership, Verdict
from annotator.views.runs import score_context


@login_required
@require_GET
def trace_detail(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    annotations = list(
        trace.annotations.latest_versions()
        .visible_to(membership)
        .select_related("annotator")
        .order_by("id")
    )
    for annotation in annotations:
        annotation.rating_by_step = annotation.ratings_by_step(len(trace.step_texts))
    # The human first error beside the scores: the verdict of the labels this member sees.
    human_first_error = Verdict.resolve(annotations).first_error_step
    return render(
        request,
        "trace.html",
        {
            "project": membership.project,
            "membership": membership,
            "trace": trace,
            "annotations": annotations,
            **score_context(membership, trace, human_first_error),
        },
    )


@login_required
@require_GET
def trace_history(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    versions = (
        trace.annotations.visible_to(membership)
        .select_related("annotator")
        .prefetch_related("reviews__reviewer")
    )
    return render(
        request,
        "history.html",
        {
            "project": membership.project,
            "membership": membership,
            "trace": trace,
            "versions": versions.order_by(
                "annotator__username", "external_annotator", "kind", "version"
            ),
        },
    )


@login_required
@require_POST
def mark_gold(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    _, trace = get_trace_for_user(request.user, slug, trace_id, allow=Membership.may_review)
    if request.POST.get("unmark"):
        review.unmark_gold(trace)
        messages.success(request, "No longer a gold question.")
    else:
        try:
            label = reviewer_label(request.POST, trace.num_steps)
        except LabelError as exc:
            messages.error(request, f"Not marked gold: {exc}")
            return redirect("review-trace", slug=slug, trace_id=trace.pk)
        review.mark_gold(trace, request.user, label)
        messages.success(request, "Marked as a gold question.")
    return redirect("review-trace", slug=slug, trace_id=trace.pk)
