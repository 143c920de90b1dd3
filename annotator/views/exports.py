"""The project page's *Download* button: ``annotator.downloads.export_response``, which
the API's export endpoint answers through too."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.http import require_GET

from annotator.access import get_membership
from annotator.downloads import export_response
from annotator.models import Membership


@login_required
@require_GET
def export_dataset(request: HttpRequest, slug: str) -> HttpResponseBase:
    project = get_membership(request.user, slug, allow=Membership.may_review).project
    return export_response(project, request.GET)
