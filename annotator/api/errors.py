"""Every API error answers JSON (``{"detail": ..., "code": ...}``), never Django's HTML
page: DRF's exception handler, and the site's 404 and 500 handlers under ``/api/``."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's handler, and a JSON 500 for anything it does not know: every API error
    has a JSON body (``{"detail": ..., "code": ...}``), never Django's HTML page. The
    exception is logged with its traceback, not shown."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    logger.error("API error", exc_info=exc, extra={"request": context.get("request")})
    return Response(
        {"detail": "Server error; it has been logged.", "code": "server_error"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def server_error(request: HttpRequest) -> HttpResponseBase:
    """The 500 for errors outside DRF (middleware, ``handler500``): JSON under ``/api/``."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": "Server error; it has been logged.", "code": "server_error"}, status=500
        )
    return defaults.server_error(request)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """The 404 for URLs no view matches (``handler404``): JSON under ``/api/``."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)
