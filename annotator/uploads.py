"""The upload size check, asked of a request before its body is read: the import
page and the API's upload endpoints answer with it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat


def upload_too_large(request: HttpRequest) -> str | None:
    """Why the request's body is too big to take, or None. Asked before the body is
    read, so a 2 GiB upload is refused without being spooled to disk; Django reads no
    more than Content-Length, so a body that lies about its size is cut there."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "The request has no valid Content-Length."
    if length > settings.MAX_UPLOAD_BYTES:
        return (
            f"The upload is {filesizeformat(length)}; at most "
            f"{filesizeformat(settings.MAX_UPLOAD_BYTES)} "
            "may be uploaded (STEPWISE_MAX_UPLOAD_BYTES). Split the file, or compress it "
            "with gzip."
        )
    return None
