"""Login throttling: a password guesser gets a fixed number of tries per username and
per client address, then is refused (the right password included) until the window
has passed.

The counts live in Django's cache (Redis in production, so every web process sees
them). The policy, in settings: ``LOGIN_FAILURE_LIMIT`` failures per username or
``LOGIN_FAILURE_LIMIT_PER_IP`` per address within ``LOGIN_LOCKOUT_SECONDS`` of the
first lock every login for it for the rest of that window. A success does not reset
the count: it would let an attacker who owns one account reset the per-address
count between guesses at another.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.http import HttpRequest

LOCKED_MESSAGE = "Too many failed logins; try again in {minutes} minutes."


def _keys(request: HttpRequest | None, username: str) -> list[tuple[str, int]]:
    keys = [(f"login-failures:user:{username.lower()}", settings.LOGIN_FAILURE_LIMIT)]
    address = request.META.get("REMOTE_ADDR") if request is not None else None
    if address:
        keys.append((f"login-failures:ip:{address}", settings.LOGIN_FAILURE_LIMIT_PER_IP))
    return keys


def is_locked(request: HttpRequest | None, username: str) -> bool:
    counts = cache.get_many([key for key, _ in _keys(request, username)])
    return any(counts.get(key, 0) >= limit for key, limit in _keys(request, username))


def record_failure(request: HttpRequest | None, username: str) -> None:
    for key, _ in _keys(request, username):
        # add() starts the window on the first failure; incr() never extends it.
        cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


class ThrottledModelBackend(ModelBackend):
    """Django's username and password check, behind the throttle."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get("username", "")
        if is_locked(request, username or ""):
            if request is not None and hasattr(request, "_messages"):
                minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
                messages.error(request, LOCKED_MESSAGE.format(minutes=minutes))
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(request, username or "")
        return user
