"""A project's Rewards page: the rollouts an RL trainer had scored by the reward service
(``annotator/rollouts.py``), to see reward hacking happen. The page holds the filters;
its charts and its list of hacking suspects are partials that htmx loads after it, each
a few grouped queries however many rollouts there are.

Members who see model scores see it (PRM returns are model scores); what depends on
the graded answer (right answers by return, right-answer suspects) only those who also
see the reference answer. Rollouts hidden from the member are left out of every figure.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotator import charts, rollouts
from annotator.access import get_membership
from annotator.filters import BadParameter, bad_parameter_is_400, text_param
from annotator.models import Membership, Trace, TraceQuerySet


def _rollouts(
    request: HttpRequest, slug: str
) -> tuple[Membership, TraceQuerySet, list[tuple[str, Any]]]:
    """The membership (404 for a non-member or one blind to model scores), the member's
    visible rollouts, and their transforms as stored."""
    membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
    rows = rollouts.rollouts(
        Trace.objects.filter(project=membership.project).visible_to(membership)
    )
    with rollouts.reading():
        return membership, rows, rollouts.transforms(rows)


def _step(request: HttpRequest, field: str) -> int | None:
    raw = text_param(request.GET, field, max_length=12).strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise BadParameter(field, "must be a whole number of 0 or more")
    return int(raw)


def _filter(request: HttpRequest, transforms: list[tuple[str, Any]]) -> rollouts.RolloutFilter:
    """The page's filter; 400 naming the field for a transform these rollouts do not
    have or a training step that is not a whole number."""
    label = text_param(request.GET, "transform", max_length=200)
    transform = None
    if label:
        by_label = {rollouts.transform_label(*pair): pair for pair in transforms}
        if label not in by_label:
            raise BadParameter("transform", "is not a transform of these rollouts")
        transform = by_label[label]
    return rollouts.RolloutFilter(
        transform=transform,
        step_from=_step(request, "step_from"),
        step_to=_step(request, "step_to"),
    )


@login_required
@require_GET
@bad_parameter_is_400
def rewards(request: HttpRequest, slug: str) -> HttpResponse:
    membership, _, transforms = _rollouts(request, slug)
    rollout_filter = _filter(request, transforms)
    return render(
        request,
        "rewards.html",
        {
            "project": membership.project,
            "membership": membership,
            "transforms": [rollouts.transform_label(*pair) for pair in transforms],
            "selected_transform": request.GET.get("transform", ""),
            "filter": rollout_filter,
            "query": request.GET.urlencode(),
        },
    )


@login_required
@require_GET
@bad_parameter_is_400
def rewards_charts(request: HttpRequest, slug: str) -> HttpResponse:
    membership, rows, transforms = _rollouts(request, slug)
    rollout_filter = _filter(request, transforms)
    rows = rollouts.selected(rows, rollout_filter)
    figures = []
    with rollouts.reading():
        extent = rollouts.ranges(rows)
        if extent.rollouts:
            figures = [
                charts.return_by_steps(rollouts.return_by_steps(rows)),
                charts.return_by_length(rollouts.return_by_length(rows, extent)),
            ]
            if membership.sees_reference_answer():
                figures.append(charts.success_by_return(rollouts.success_by_return(rows, extent)))
    return render(
        request,
        "rewards.html#reward-charts",
        {
            "project": membership.project,
            "extent": extent,
            "filtered": rollout_filter != rollouts.RolloutFilter(),
            "charts": [charts.embed(fig, f"reward-chart-{i}") for i, fig in enumerate(figures)],
        },
    )


@login_required
@require_GET
@bad_parameter_is_400
def rewards_suspects(request: HttpRequest, slug: str) -> HttpResponse:
    membership, rows, transforms = _rollouts(request, slug)
    rows = rollouts.selected(rows, _filter(request, transforms))
    sees_answers = membership.sees_reference_answer()
    with rollouts.reading():
        failures, thresholds = rollouts.high_return_failures(rows) if sees_answers else ([], {})
        repeating = rollouts.repeating_rollouts(rows)
    return render(
        request,
        "rewards.html#hacking-suspects",
        {
            "project": membership.project,
            "sees_answers": sees_answers,
            "failures": failures,
            "thresholds": thresholds,
            "repeating": repeating,
            "shown": rollouts.SUSPECTS_SHOWN,
        },
    )
