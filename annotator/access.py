"""Access helpers: every project page and endpoint goes through these.

A user who is not a member of a project gets a 404, the same as for a project
that does not exist, so outsiders learn nothing about which projects exist. What a
member may do is asked of their ``Membership`` (``may_review``, ``may_manage``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import Http404

from annotator.hiding import check_trace_visible
from annotator.models import Membership, Trace


def get_membership(
    user, slug: str, *, allow: Callable[[Membership], bool] | None = None
) -> Membership:
    """The user's membership of project ``slug`` (with the project loaded), or 404 when
    there is none or ``allow(membership)`` is false.

    >>> get_membership(request.user, slug, allow=Membership.may_review)
    """
    if not user.is_authenticated:
        raise Http404("No such project")
    membership = (
        Membership.objects.select_related("project").filter(project__slug=slug, user=user).first()
    )
    if membership is None or (allow is not None and not allow(membership)):
        raise Http404("No such project")
    return membership


def get_trace_for_user(
    user, slug: str, trace_id: int, *, allow: Callable[[Membership], bool] | None = None
) -> tuple[Membership, Trace]:
    """The membership and the project's trace ``trace_id`` (problem loaded), or 404,
    also for a trace hidden from the member (``annotator/hiding.py``)."""
    membership = get_membership(user, slug, allow=allow)
    try:
        trace = Trace.objects.select_related("problem").get(project=membership.project, pk=trace_id)
    except Trace.DoesNotExist:
        raise Http404("No such trace") from None
    check_trace_visible(membership, trace)  # a reference trace, where answers are hidden
    return membership, trace
