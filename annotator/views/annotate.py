"""The annotation workspace: next trace, claim, submit, skip, undo, progress.

The views answer htmx requests with the ``workspace`` partial of ``annotate.html``
and plain form posts with a redirect, so the basic submit works without JavaScript.

A GET never holds a trace: ``/annotate/`` shows the trace the user already holds (or
a *Start* button), and ``/annotate/<id>/`` shows a trace the user does not hold
read-only, with a *Claim* button. Holding is a POST (``annotate-claim``,
``annotate-claim-trace``), so a cross-site link cannot make a member hold anything.
"""

from __future__ import annotations

import contextlib
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from annotator import queue, review
from annotator.access import get_membership, get_trace_for_user
from annotator.grounded_paths import path_evidence
from annotator.labelling import (
    FLAGS,
    LabelError,
    check_label,
    human_first_error,
    last_submission,
    parse_first_error,
    parse_ratings,
    progress,
    submit_label,
)
from annotator.models import (
    Annotation,
    LabelScheme,
    Membership,
    Trace,
    pad_ratings,
)
from annotator.views.grounded import sees_grounded_trees
from annotator.views.runs import score_context


def _own_label(trace: Trace, user) -> Annotation | None:
    return (
        Annotation.objects.latest_label_by(user)
        .filter(trace=trace)
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
    read_only: bool = False,
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
        "read_only": read_only,
        "error": error,
        "served": served,
        "per_step": project.label_scheme == LabelScheme.PER_STEP,
        "served_at": f"{time.time():.3f}",
        # On full page loads only: keeps the submit-and-next round trip short.
        "sent_back": [] if request.htmx else _sent_back(membership),
    }
    if trace is None:
        # What an empty workspace says is honest: no traces, all done, or none for you.
        regular = Trace.objects.filter(project=project, is_gold=False)
        context["queue_state"] = {
            "traces": regular.count(),
            "left": regular.filter(label_count__lt=project.annotators_per_trace).count(),
        }
    else:
        # Blind unless the project shows model scores (reviewers and owners always see
        # them). The human row is the trace's verdict, as on the trace page, not the
        # member's own label: an owner who has not labelled it sees the annotators'.
        human = human_first_error(membership, trace) if membership.sees_model_scores() else None
        context |= score_context(membership, trace, human)
        # A grounded run's tool transcripts, for those who may see its trees.
        if sees_grounded_trees(membership):
            context["grounded_evidence"] = path_evidence(trace)
    template = "annotate.html#workspace" if request.htmx else "annotate.html"
    response = render(request, template, context, status=status)
    if request.htmx and trace is not None:
        response["HX-Push-Url"] = reverse("annotate-trace", args=[project.slug, trace.pk])
    return response


@login_required
@require_GET
def annotate_next(request: HttpRequest, slug: str) -> HttpResponse:
    """The trace the user holds, or a *Start* button that claims one (a POST)."""
    membership = get_membership(request.user, slug)
    project = membership.project
    trace = queue.held_trace(project, request.user, timezone.now())
    served = queue.Served(trace, reason="start")
    if trace is None and project.screening_questions:
        screening = queue.screening_status(project, request.user)
        if not screening.pending and not screening.passed:
            served = queue.Served(None, reason="screening-failed", screening=screening)
    return _workspace(request, membership, trace, served=served)


@login_required
@require_POST
def annotate_claim(request: HttpRequest, slug: str) -> HttpResponse:
    """Serve and hold the next trace."""
    membership = get_membership(request.user, slug)
    served = queue.claim_next(membership.project, request.user)
    if not request.htmx and served.trace is not None:
        return redirect("annotate-trace", slug=slug, trace_id=served.trace.pk)
    return _workspace(request, membership, served.trace, served=served)


def _editable(membership: Membership, trace: Trace, user) -> tuple[bool, Annotation | None]:
    """(editable, the user's own label): the user holds the trace or labelled it."""
    previous = _own_label(trace, user)
    return previous is not None or queue.holds_trace(trace, user), previous


@login_required
@require_GET
def annotate_trace(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    if not queue.may_label(membership.project, trace, request.user):
        return redirect("annotate", slug=slug)  # "next" serves screening questions first
    editable, previous = _editable(membership, trace, request.user)
    return _workspace(request, membership, trace, previous=previous, read_only=not editable)


@login_required
@require_POST
def annotate_claim_trace(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    """Hold a trace opened by link, within the project's per-person cap and N."""
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    if not queue.may_label(membership.project, trace, request.user):
        return redirect("annotate", slug=slug)
    try:
        queue.claim_trace(membership.project, trace, request.user)
    except queue.HoldRefused as exc:
        previous = _own_label(trace, request.user)
        return _workspace(
            request,
            membership,
            trace,
            previous=previous,
            read_only=True,
            error=str(exc),
            status=409,
        )
    if not request.htmx:
        return redirect("annotate-trace", slug=slug, trace_id=trace.pk)
    return _workspace(request, membership, trace, previous=_own_label(trace, request.user))


@login_required
@require_GET
def annotate_progress(request: HttpRequest, slug: str) -> HttpResponse:
    """The progress line, loaded by the page after the trace (off the submit path);
    ``?trace=ID`` adds that trace's place in the project."""
    trace_id = request.GET.get("trace", "")
    if trace_id.isdigit():
        membership, trace = get_trace_for_user(request.user, slug, int(trace_id))
    else:
        membership, trace = get_membership(request.user, slug), None
    return render(
        request,
        "annotate.html#progress",
        {"project": membership.project, "progress": progress(membership, trace)},
    )


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

    def refused(error: str) -> HttpResponse:
        """The same trace again, with what was entered and why it was not stored."""
        entered = {
            "ratings": ratings,
            "first_error_step": first_error,
            "flag": flag,
            "reason": reason,
        }
        return _workspace(request, membership, trace, entered=entered, error=error, status=422)

    project = membership.project
    seconds = None
    with contextlib.suppress(ValueError):
        seconds = time.time() - float(data.get("served_at", ""))
    try:
        ratings = parse_ratings(data, trace.num_steps)
        first_error = parse_first_error(data)
        label = check_label(project, trace, request.user, first_error, ratings, flag, reason)
        submit_label(
            project,
            trace,
            request.user,
            label,
            seconds_spent=seconds,
            limit_to_n=not membership.may_review(),
        )
    except LabelError as exc:  # a rule broken, screening first, or the trace full
        return refused(str(exc))
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
