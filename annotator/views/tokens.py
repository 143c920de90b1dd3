"""API tokens: each user creates, replaces and revokes their own.

DRF's ``authtoken`` keeps one token per user, so "create" replaces the old one; the
key is shown once, on the page the POST that made it redirects to: the POST leaves the
key in the session and that GET takes it out, so a reload neither shows it again nor
(being a GET, not a resubmitted POST) replaces the token just copied.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

NEW_KEY = "new_token_key"  # the session key holding a new token until the page shows it


@login_required
@require_GET
def token_list(request: HttpRequest) -> HttpResponse:
    token = Token.objects.filter(user=request.user).first()
    new_key = request.session.pop(NEW_KEY, "")
    # A key flashed before a revoke or a newer token is no longer the user's token.
    if token is None or new_key != token.key:
        new_key = ""
    return render(request, "tokens.html", {"token": token, "new_key": new_key})


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        Token.objects.filter(user=request.user).delete()
        token = Token.objects.create(user=request.user)
    request.session[NEW_KEY] = token.key
    return redirect("tokens")


@login_required
@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    deleted, _ = Token.objects.filter(user=request.user).delete()
    if deleted:
        messages.success(request, "Token revoked: scripts using it are refused from now on.")
    return redirect("tokens")
