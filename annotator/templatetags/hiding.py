"""``{% sees_reference_answer as shown %}``: the hiding rule for partials whose view
passes no ``membership`` (the trace page's Monte-Carlo section, ``trace_mc``)."""

from __future__ import annotations

from django import template

from annotator.models import Membership

register = template.Library()


@register.simple_tag(takes_context=True)
def sees_reference_answer(context: template.Context) -> bool:
    """Whether the member may see the reference answer: the context's ``membership``,
    else the request user's membership of the context's ``project`` (one query). No
    membership: hidden."""
    membership = context.get("membership")
    if membership is None:
        membership = (
            Membership.objects.select_related("project")
            .filter(project=context["project"], user_id=context["request"].user.pk)
            .first()
        )
    return membership is not None and membership.sees_reference_answer()
