"""Access helpers: every project page and endpoint goes through these.

A user who is not a member of a project gets a 404, the same as for a project
that does not exist, so outsiders learn nothing about which projects exist.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import Http404

from annotator.models import Membership, Role, Trace

MANAGERS = (Role.OWNER, Role.REVIEWER)


def get_membership(user, slug: str, roles: Iterable[str] | None = None) -> Membership:
    """The user's membership of project ``slug`` (with the project loaded), or 404."""
    if not user.is_authenticated:
        raise Http404("No such project")
    membership = (
        Membership.objects.select_related("project").filter(project__slug=slug, user=user).first()
    )
    if membership is None or (roles is not None and membership.role not in roles):
        raise Http404("No such project")
    return membership


def get_trace_for_user(user, slug: str, trace_id: int) -> tuple[Membership, Trace]:
    membership = get_membership(user, slug)
    try:
        trace = Trace.objects.select_related("problem").get(project=membership.project, pk=trace_id)
    except Trace.DoesNotExist:
        raise Http404("No such trace") from None
    return membership, trace


def can_see_all_labels(membership: Membership) -> bool:
    """Annotators work blind: they see only their own labels."""
    return membership.role in MANAGERS
