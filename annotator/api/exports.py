"""Exports: the project's labels as a download, the same as the project page's."""

from __future__ import annotations

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request

from annotator.access import get_membership
from annotator.downloads import FILE_TYPES, export_response
from annotator.exporting import EXPORT_FORMATS, LABEL_SOURCES
from annotator.models import Membership


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), default="jsonl"),
        OpenApiParameter(
            "labels",
            str,
            default="human",
            description=f"{', '.join(LABEL_SOURCES)}, or the name of one of the project's label sets",
        ),
        OpenApiParameter("split", str),
        OpenApiParameter("file", str, enum=list(FILE_TYPES), default="jsonl"),
    ],
    responses={
        (200, "application/x-ndjson"): OpenApiTypes.STR,
        (200, "application/octet-stream"): OpenApiTypes.BINARY,
    },
)
@api_view(["GET"])
def export(request: Request, slug: str) -> HttpResponseBase:
    """The same download as the project page's (see ``export_response``)."""
    project = get_membership(request.user, slug, allow=Membership.may_review).project
    return export_response(project, request.query_params)
