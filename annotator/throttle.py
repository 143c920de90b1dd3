"""Login throttling: a password guesser gets a fixed number of tries per account and
per client address, then is refused (the right password included) until the window
has passed.

Two counts, each locking only what it counts: ``LOGIN_FAILURE_LIMIT`` failures for
one username within ``LOGIN_LOCKOUT_SECONDS`` lock that account (from every address),
``LOGIN_FAILURE_LIMIT_PER_IP`` failures from one client address lock that address
(for every account). The client address is the connection's, or, behind proxies the
settings name (``TRUSTED_PROXY_COUNT``), the one the nearest of them recorded in
X-Forwarded-For: without that, every user behind the proxy shares its address, and 50
wrong passwords from anyone would lock everyone out. A client's own X-Forwarded-For is
never believed otherwise (it would pick a fresh address per guess).

The counts live in Django's cache, which must be one for all web processes (Redis in
production; ``manage.py check --deploy`` warns otherwise: with a per-process cache
each process counts its own share and the limit multiplies). A success does not reset
the count: it would let an attacker who owns one account reset the per-address count
between guesses at another.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.http import HttpRequest

LOCKED_MESSAGE = "Too many failed logins; try again in {minutes} minutes."


def client_address(request: HttpRequest) -> str:
    """The client's address: the connection's, or with ``TRUSTED_PROXY_COUNT`` proxies
    in front, the address the outermost of them saw, which it appended to
    X-Forwarded-For (entries left of it are the client's own claims). A request that
    did not come through all of them (too few entries) counts by its connection."""
    remote = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    return forwarded[-hops] if len(forwarded) >= hops else remote


def _keys(request: HttpRequest | None, username: str) -> list[tuple[str, int]]:
    keys = [(f"login-failures:user:{username.lower()}", settings.LOGIN_FAILURE_LIMIT)]
    address = client_address(request) if request is not None else None
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
