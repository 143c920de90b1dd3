"""API tokens: each user creates, replaces and revokes their own.

DRF's ``authtoken`` keeps one token per user, so "create" replaces the old one; the
key is shown once, in the answer to the POST that made it (never on a later GET).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token


@login_required
@require_GET
def token_list(request: HttpRequest) -> HttpResponse:
    token = Token.objects.filter(user=request.user).first()
    return render(request, "tokens.html", {"token": token, "new_key": ""})


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        Token.objects.filter(user=request.user).delete()
        token = Token.objects.create(user=request.user)
    return render(request, "tokens.html", {"token": token, "new_key": token.key}, status=201)


@login_required
@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    deleted, _ = Token.objects.filter(user=request.user).delete()
    if deleted:
        messages.success(request, "Token revoked: scripts using it are refused from now on.")
    return redirect("tokens")
