"""Review (reviewers and owners): disagreements, adjudication, accept/reject/send
back, and the agreement figures."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotator import review
from annotator.access import get_membership, get_trace_for_user
from annotator.filters import bad_parameter_is_400, text_param
from annotator.labelling import LabelError, reviewer_label
from annotator.models import Annotation, Membership, ReviewDecision, Trace
from annotator.quality import project_quality
from annotator.views.runs import score_context

# One hue per annotator column: blue, purple, orange, teal, magenta, olive; never the
# red and green that mean "wrong" and "right" in the rating cells.
COLUMN_HUES = (210, 275, 30, 180, 320, 60)


def _trace_context(membership: Membership, trace: Trace) -> dict:
    """The review page's context with the model scores beside the labels (reviewers
    always see them) against the trace's current verdict, each column in its own hue,
    and each step marked "agrees" or "disagrees" among the annotators who rated it."""
    context = review.trace_context(membership, trace)
    columns = context["columns"]
    for i, column in enumerate(columns):
        column["hue"] = COLUMN_HUES[i % len(COLUMN_HUES)]
    rows = []
    for index, text, cells in context["step_rows"]:
        judged = [
            rating
            for column, (rating, _) in zip(columns, cells, strict=True)
            if rating is not None and column["annotation"].kind == "label"
        ]
        agreement = "" if len(judged) < 2 else ("agrees" if len(set(judged)) == 1 else "disagrees")
        named = [
            (rating, is_fe, column["name"])
            for column, (rating, is_fe) in zip(columns, cells, strict=True)
        ]
        rows.append((index, text, named, agreement))
    context["step_rows"] = rows
    return {**context, **score_context(membership, trace, context["verdict"].first_error_step)}


@login_required
@require_GET
def review_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.may_review)
    project = membership.project
    show = request.GET.get("show", "open")
    rows = review.disagreements(project, include_adjudicated=show == "all")
    return render(
        request,
        "review.html",
        {"project": project, "membership": membership, "rows": rows, "show": show},
    )


@login_required
@require_GET
def review_trace(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(
        request.user, slug, trace_id, allow=Membership.may_review
    )
    return render(request, "review_trace.html", _trace_context(membership, trace))


@login_required
@require_POST
@bad_parameter_is_400
def review_adjudicate(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(
        request.user, slug, trace_id, allow=Membership.may_review
    )
    try:
        label = reviewer_label(request.POST, trace.num_steps)
    except LabelError as exc:
        context = _trace_context(membership, trace)
        context["error"] = str(exc)
        return render(request, "review_trace.html", context, status=422)
    note = text_param(request.POST, "note")
    review.adjudicate(trace, request.user, label, note=note)
    messages.success(request, f"Adjudicated trace {trace.external_id}.")
    return redirect("review", slug=slug)


@login_required
@require_POST
@bad_parameter_is_400
def review_send_back(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(
        request.user, slug, trace_id, allow=Membership.may_review
    )
    comment = text_param(request.POST, "comment").strip()
    if not comment:
        context = _trace_context(membership, trace)
        context["error"] = "Say what the annotators should look at again."
        return render(request, "review_trace.html", context, status=422)
    n = review.send_back(trace, request.user, comment)
    messages.success(request, f"Sent trace {trace.external_id} back to {n} annotator(s).")
    return redirect("review", slug=slug)


@login_required
@require_POST
@bad_parameter_is_400
def review_annotation(request: HttpRequest, slug: str, annotation_id: int) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.may_review)
    annotation = get_object_or_404(Annotation, pk=annotation_id, trace__project=membership.project)
    decision = request.POST.get("decision", "")
    if decision not in (ReviewDecision.ACCEPT, ReviewDecision.REJECT):
        return HttpResponse("decision must be accept or reject", status=400)
    review.decide(annotation, request.user, decision, text_param(request.POST, "comment"))
    return redirect("review-trace", slug=slug, trace_id=annotation.trace_id)


@login_required
@require_GET
def agreement(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=Membership.may_review)
    return render(
        request,
        "agreement.html",
        {
            "project": membership.project,
            "membership": membership,
            "quality": project_quality(membership.project),
        },
    )
