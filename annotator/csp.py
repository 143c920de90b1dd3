"""The Content-Security-Policy header on every response (Django 5.2 has no built-in
one): what a page may load and run, so that text which somehow became markup still
cannot fetch or send anything elsewhere.

Everything the pages use is served by us (htmx, KaTeX and its fonts, plotly.js, Redoc
and Swagger UI from the sidecar package), so every source is ``'self'``. Two
allowances the pages need, and why:

- ``'unsafe-inline'`` for scripts: plotly's figures are embedded as an inline script
  each (``charts.embed``), and Swagger UI's page starts itself inline. Everything that
  reaches a page from a user is escaped by the templates; the policy still forbids
  scripts from any other host, ``eval``, plugins, ``<base>`` and foreign form targets.
- ``'unsafe-inline'`` for styles: the score cells' ``style="--score: ..."``, plotly's
  and Redoc's generated styles. ``blob:`` workers: Redoc's search index.

The policy is ``settings.CONTENT_SECURITY_POLICY``; a view that set its own header
keeps it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and HEADER not in response:
            response[HEADER] = settings.CONTENT_SECURITY_POLICY
        return response
