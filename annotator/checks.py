"""``manage.py check --deploy`` checks of our own, for what Django's cannot know."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

# Caches each process keeps to itself (or none at all): counts kept there are not
# shared by the web processes.
_PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.security, deploy=True)
def check_login_throttle(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The login throttle (``annotator/throttle.py``) counts failures in the default
    cache; in a per-process one each web process counts its own share, so the limits
    multiply by the number of processes (compose's 3 gunicorn workers without Redis:
    up to 30 guesses per account, not 10)."""
    found: list[CheckMessage] = []
    backend = settings.CACHES["default"]["BACKEND"]
    if backend in _PER_PROCESS_CACHES:
        found.append(
            Warning(
                f"The default cache ({backend.rsplit('.', 1)[1]}) is per process: the login "
                "throttle's counts are not shared by the web processes, so each gets its "
                "own LOGIN_FAILURE_LIMIT.",
                hint="Set STEPWISE_CACHE_URL=redis://... (compose does).",
                id="stepwise.W001",
            )
        )
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and settings.TRUSTED_PROXY_COUNT <= 0:
        found.append(
            Warning(
                "Behind a TLS proxy (STEPWISE_BEHIND_TLS_PROXY) every request comes from "
                "the proxy's address: the login throttle's per-address limit then counts "
                "every user's failures together and can lock everyone out.",
                hint="Set STEPWISE_TRUSTED_PROXY_COUNT to the number of proxies that "
                "append the client's address to X-Forwarded-For (1 for one nginx).",
                id="stepwise.W002",
            )
        )
    return found
