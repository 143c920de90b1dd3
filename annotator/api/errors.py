"""Every API error answers JSON (``{"detail": ..., "code": ...}``), never Django's HTML
page: DRF's exception handler, the site's 404 and 500 handlers under ``/api/``, and
``unknown_api_url`` for URLs under ``/api/`` that nothing else matches (with DEBUG on,
Django answers an unmatched URL with its HTML debug page before any ``handler404``)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_not_required
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
        response.data = with_code(response.data)
        return response
    logger.error("API error", exc_info=exc, extra={"request": context.get("request")})
    return Response(
        {"detail": "Server error; it has been logged.", "code": "server_error"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def with_code(data: Any) -> dict[str, Any]:
    """DRF's error body with ``detail`` and ``code`` always there. DRF gives
    ``{"detail"}`` for most errors and the errors by field (or a bare list) for a
    ``ValidationError``: those keep their fields, and ``detail`` names the first one.
    The codes are DRF's (``not_found``, ``permission_denied``, ``invalid``, ...)."""
    if isinstance(data, dict) and "detail" in data:
        return {**data, "code": data.get("code") or getattr(data["detail"], "code", "error")}
    if isinstance(data, list):
        data = {"non_field_errors": data}
    if not isinstance(data, dict) or not data:
        return {"detail": str(data), "code": "error"}
    field, errors = next(iter(data.items()))
    first = _first_error(errors)
    detail = str(first) if field == "non_field_errors" else f"{field}: {first}"
    return {**data, "detail": detail, "code": getattr(first, "code", None) or "invalid"}


def _first_error(errors: Any) -> Any:
    """The first message of a field's errors (a list, or nested errors by key)."""
    while isinstance(errors, (list, dict)) and errors:
        errors = errors[0] if isinstance(errors, list) else next(iter(errors.values()))
    return errors


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


@login_not_required  # an unknown URL reveals nothing; the API answers 404 to anyone
def unknown_api_url(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    """Any URL under ``/api/`` that no API view matches, with DEBUG on or off."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
