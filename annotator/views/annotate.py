"""The annotation workspace: next trace, submit, skip, undo.

The views answer htmx requests with the ``workspace`` partial of ``annotate.html``
and plain form posts with a redirect, so the basic submit works without JavaScript.
"""

from __future__ import annotations

import contextlib
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotator import queue, review
from annotator.access import get_membership, get_trace_for_user
from annotator.labelling import (
    FLAGS,
    LabelError,
    last_submission,
    normalise_label,
    parse_first_error,
    parse_ratings,
    submit_label,
)
from annotator.models import (
    Annotation,
    AnnotationKind,
    LabelScheme,
    Membership,
    Trace,
    pad_ratings,
)
from annotator.views.runs import score_context

SCREENING_FIRST = (
    "This project screens new annotators: answer its screening questions (Label -> next) "
    "before labelling other traces."
)


def _own_label(trace: Trace, user) -> Annotation | None:
    return (
        Annotation.objects.filter(
            trace=trace, annotator=user, kind=AnnotationKind.LABEL, is_latest=True
        )
        .only("id", "version", "first_error_step", "step_ratings", "gave_up", "bad_problem")
        .first()
    )


def _sent_back(membership: Membership) -> list:
    """Reviews asking this annotator to look again at one of their current labels."""
    return list(
        review.open_requests(membership.project, membership.user).select_related(
            "annotation__trace"
        )[:20]
    )


def _workspace(
    request: HttpRequest,
    membership: Membership,
    trace: Trace | None,
    *,
    served: queue.Served | None = None,
    previous: Annotation | None = None,
    entered: dict | None = None,
    error: str = "",
    editing: bool = False,
    status: int = 200,
) -> HttpResponse:
    project = membership.project
    rows = []
    first_error = None
    flag, reason = "", ""
    if trace is not None:
        steps = trace.step_texts
        ratings = None
        if entered is not None:
            ratings = entered["ratings"]
            first_error = entered["first_error_step"]
            flag, reason = entered["flag"], entered["reason"]
        elif previous is not None:
            ratings = previous.step_ratings
            first_error = previous.first_error_step
        ratings = pad_ratings(ratings, len(steps))
        rows = [(index, text, ratings[index]) for index, text in enumerate(steps)]
    context = {
        "project": project,
        "membership": membership,
        "trace": trace,
        "rows": rows,
        "first_error": first_error,
        "flag": flag,
        "reason": reason,
        "flags": FLAGS,
        "previous": previous,
        "editing": editing or previous is not None,
        "error": error,
        "served": served,
        "per_step": project.label_scheme == LabelScheme.PER_STEP,
        "served_at": f"{time.time():.3f}",
        # On full page loads only: keeps the submit-and-next round trip short.
        "sent_back": [] if request.htmx else _sent_back(membership),
    }
    if trace is not None:
        # Blind unless the project shows model scores (reviewers and owners always see them).
        context |= score_context(membership, trace, first_error)
    template = "annotate.html#workspace" if request.htmx else "annotate.html"
    response = render(request, template, context, status=status)
    if request.htmx and trace is not None:
        response["HX-Push-Url"] = reverse("annotate-trace", args=[project.slug, trace.pk])
    return response


@login_required
@require_GET
def annotate_next(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    served = queue.claim_next(membership.project, request.user)
    return _workspace(request, membership, served.trace, served=served)


@login_required
@require_GET
def annotate_trace(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    if not queue.may_label(membership.project, trace, request.user):
        return redirect("annotate", slug=slug)  # "next" serves screening questions first
    previous = _own_label(trace, request.user)
    if previous is None:
        # Hold it only while it is new work: a labelled trace already counts once.
        queue.hold_trace(membership.project, trace, request.user)
    return _workspace(request, membership, trace, previous=previous)


def _next(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Answer a submit or skip: the next trace for htmx, a redirect for a plain form."""
    if not request.htmx:
        return redirect("annotate", slug=membership.project.slug)
    served = queue.claim_next(membership.project, request.user)
    return _workspace(request, membership, served.trace, served=served)


@login_required
@require_POST
def annotate_submit(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    data = request.POST
    flag = data.get("flag", "")
    reason = data.get("reason", "")
    ratings: list = [None] * trace.num_steps
    first_error = None
    try:
        ratings = parse_ratings(data, trace.num_steps)
        first_error = parse_first_error(data)
        label = normalise_label(
            trace.num_steps, membership.project.label_scheme, first_error, ratings, flag, reason
        )
    except LabelError as exc:
        entered = {
            "ratings": ratings,
            "first_error_step": first_error,
            "flag": flag,
            "reason": reason,
        }
        return _workspace(request, membership, trace, entered=entered, error=str(exc), status=422)
    if not queue.may_label(membership.project, trace, request.user):
        return _workspace(
            request,
            membership,
            trace,
            entered={
                "ratings": ratings,
                "first_error_step": first_error,
                "flag": flag,
                "reason": reason,
            },
            error=SCREENING_FIRST,
            status=422,
        )
    seconds = None
    with contextlib.suppress(ValueError):
        seconds = time.time() - float(data.get("served_at", ""))
    submit_label(membership.project, trace, request.user, label, seconds_spent=seconds)
    return _next(request, membership)


@login_required
@require_POST
def annotate_skip(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    queue.skip(membership.project, trace, request.user)
    return _next(request, membership)


@login_required
@require_POST
def annotate_undo(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    last = last_submission(membership.project, request.user)
    if last is None:
        messages.info(request, "Nothing to undo yet.")
        if not request.htmx:
            return redirect("annotate", slug=slug)
        served = queue.claim_next(membership.project, request.user)
        return _workspace(
            request, membership, served.trace, served=served, error="Nothing to undo yet."
        )
    if not request.htmx:
        return redirect("annotate-trace", slug=slug, trace_id=last.trace_id)
    trace = Trace.objects.select_related("problem").get(pk=last.trace_id)
    return _workspace(request, membership, trace, previous=last)
