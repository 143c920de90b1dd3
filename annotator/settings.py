"""Settings for Stepwise, read from environment variables.

Every value has a default that works on a machine with nothing but Python: an
SQLite file and a filesystem Celery broker under ``var/``. ``make demo`` points
``DATABASE_URL`` and ``CELERY_BROKER_URL`` at PostgreSQL and Redis when they are
reachable; tests always run on PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("STEPWISE_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY, or the contents of SECRET_KEY_FILE (a Docker or Kubernetes secret).
    With DEBUG off there is no fallback: a key anyone can read in our source would let
    them forge sessions and password-reset links."""
    key = env_str("SECRET_KEY", "")
    path = env_str("SECRET_KEY_FILE", "")
    if path and not key:
        try:
            key = Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"SECRET_KEY_FILE={path!r} cannot be read ({exc})") from None
    if key:
        return key
    if DEBUG:
        return "stepwise-insecure-development-key"
    raise ImproperlyConfigured(
        "SECRET_KEY or SECRET_KEY_FILE must be set when DEBUG is off (make one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`); "
        "for development set DEBUG=true"
    )


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc from our static files, no CDN
    "annotator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "annotator.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "annotator.urls"
WSGI_APPLICATION = "annotator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DEFAULT_SQLITE_URL = f"sqlite:///{VAR_DIR / 'stepwise.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", DEFAULT_SQLITE_URL), conn_max_age=env_int("DB_CONN_MAX_AGE", 60)
    )
}
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
# Who may create projects: staff and users granted annotator.add_project, or everyone.
ANYONE_MAY_CREATE_PROJECTS = env_bool("STEPWISE_ANYONE_MAY_CREATE_PROJECTS", False)
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_ROOT = VAR_DIR / "media"
# Uploaded trace files go through Django's storage API (by default files under
# MEDIA_ROOT/uploads/), so a worker on another machine reads them from a shared
# volume, or from object storage configured in STORAGES.
# Served by WhiteNoise: from the app's static folders directly (no collectstatic needed
# for the demo), or from STATIC_ROOT after collectstatic in production.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# The largest upload an import page or the API accepts, checked against the request's
# Content-Length before the body is read (nginx: set client_max_body_size to match).
MAX_UPLOAD_BYTES = env_int("STEPWISE_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024)
# How long the dashboard page waits for each of its regions before it says the region
# got no answer and offers to retry (static/js/dashboard_regions.js).
DASHBOARD_REGION_TIMEOUT_S = env_int("STEPWISE_DASHBOARD_REGION_TIMEOUT_S", 60)

SESSION_COOKIE_HTTPONLY = True
SESSION_ENGINE = "annotator.sessions"  # database sessions; malformed cookies are no session
CSRF_COOKIE_HTTPONLY = False  # htmx reads no cookie: the token travels in hx-headers.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Sent on every response by annotator/csp.py (why each allowance: there). Nothing is
# loaded from another host: the static files are ours, Redoc's web fonts are dropped.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Production (DEBUG off) is HTTPS only, and `manage.py check --deploy` is clean: HTTP
# is redirected, cookies are marked Secure, browsers are told to keep to HTTPS (HSTS).
# Each can be turned off by its own variable, e.g. for a test server on plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
# Behind a proxy that terminates TLS (nginx, a load balancer) requests reach us as
# HTTP; trust its X-Forwarded-Proto only when told to, since a client could send it too.
if env_bool("STEPWISE_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Login throttling (annotator/throttle.py): after LOGIN_FAILURE_LIMIT wrong passwords
# for one username every login to that account is refused, and after
# LOGIN_FAILURE_LIMIT_PER_IP from one client address every login from that address,
# the right password included, until LOGIN_LOCKOUT_SECONDS have passed since the first
# failure. Counted in the cache, which must be shared by all web processes in
# production (STEPWISE_CACHE_URL=redis://...; check --deploy warns otherwise).
AUTHENTICATION_BACKENDS = ["annotator.throttle.ThrottledModelBackend"]
LOGIN_FAILURE_LIMIT = env_int("STEPWISE_LOGIN_FAILURE_LIMIT", 10)
LOGIN_FAILURE_LIMIT_PER_IP = env_int("STEPWISE_LOGIN_FAILURE_LIMIT_PER_IP", 50)
LOGIN_LOCKOUT_SECONDS = env_int("STEPWISE_LOGIN_LOCKOUT_SECONDS", 15 * 60)
# How many proxies in front of the app append the client's address to X-Forwarded-For
# (1 for one nginx with proxy_add_x_forwarded_for); set it only when the app is
# reachable through them alone. 0: the header is the client's own claim and is
# ignored; the connection's address is the client's.
TRUSTED_PROXY_COUNT = env_int("STEPWISE_TRUSTED_PROXY_COUNT", 0)
_CACHE_URL = env_str("STEPWISE_CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
        if _CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser with a 400 for nesting too deep and numbers past a float.
    "DEFAULT_PARSER_CLASSES": [
        "annotator.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # ``?format=`` names an export format here, not a renderer.
    "URL_FORMAT_OVERRIDE": None,
    # Every API error answers JSON, a server error included.
    "EXCEPTION_HANDLER": "annotator.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stepwise API",
    "DESCRIPTION": "Process supervision data: traces, steps, labels, imports and exports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two serializers have a ``kind``: each set of choices gets its own enum's name.
    "ENUM_NAME_OVERRIDES": {
        "AnnotationKindEnum": "annotator.models.AnnotationKind",
        "TrainingKindEnum": "annotator.training.KINDS",
    },
}

# Background jobs (annotator/jobs.py). A running job writes a heartbeat every
# JOB_HEARTBEAT_SECONDS; one silent for JOB_STALE_SECONDS is taken to have lost its
# worker and is taken up again, at most JOB_MAX_ATTEMPTS times in all.
JOB_HEARTBEAT_SECONDS = env_float("STEPWISE_JOB_HEARTBEAT_SECONDS", 5.0)
JOB_STALE_SECONDS = env_float("STEPWISE_JOB_STALE_SECONDS", 60.0)
JOB_MAX_ATTEMPTS = env_int("STEPWISE_JOB_MAX_ATTEMPTS", 3)
JOB_SWEEP_IN_WORKER = env_bool("STEPWISE_JOB_SWEEP_IN_WORKER", True)
if JOB_STALE_SECONDS < 3 * JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "STEPWISE_JOB_STALE_SECONDS must be at least 3 heartbeats "
        f"({JOB_STALE_SECONDS} < 3 x {JOB_HEARTBEAT_SECONDS})"
    )
if JOB_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("STEPWISE_JOB_MAX_ATTEMPTS must be at least 1")

# Celery. The broker defaults to kombu's filesystem transport so the app runs with no
# server at all; set CELERY_BROKER_URL=redis://... wherever Redis is available.
# Queues: "default" (imports, CPU work) and "gpu" (scoring, rollouts, training); a GPU
# worker runs `-Q gpu`, one process per GPU.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 24 * 3600)  # GPU runs: hours
IMPORT_TIME_LIMIT = env_int("STEPWISE_IMPORT_TIME_LIMIT", 2 * 3600)
LONGEST_TASK_SECONDS = max(CELERY_TASK_TIME_LIMIT, IMPORT_TIME_LIMIT)
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Worker pings and broadcasts: without it kombu writes ``control/`` into the cwd.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged message after the visibility timeout: it must
    # outlast the longest task, or a long GPU run would be started twice. A worker that
    # dies does not wait for it: the job sweeper requeues its job (annotator/jobs.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": LONGEST_TASK_SECONDS + 3600,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing gives up after about a second, so a request never hangs on a dead broker.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Models a worker process keeps loaded for later runs of the same scorer, and how many
# traces a run scores and commits at a time (a cancel takes effect between chunks).
SCORER_CACHE_SIZE = env_int("STEPWISE_SCORER_CACHE_SIZE", 2)
SCORING_CHUNK_TRACES = env_int("STEPWISE_SCORING_CHUNK_TRACES", 1024)
# Scoring and Monte-Carlo runs are split into shards of this many traces, which any
# free worker on the run's queue takes (``annotator/shards.py``); 0: a run is one job on
# one worker. A run may set its own (the API's ``shard_traces``).
RUN_SHARD_TRACES = env_int("STEPWISE_RUN_SHARD_TRACES", 0)
# Where training runs write checkpoints and finished models (one folder per run); GPU
# workers and the workers that score with the trained models must share it.
MODEL_DIR = Path(env_str("STEPWISE_MODEL_DIR", str(VAR_DIR / "models")))
# Scoring runs go to the queue their scorer names (gpu, or default for device=cpu);
# the route is only the fallback for a task sent without one.
CELERY_TASK_ROUTES = {
    "annotator.tasks.run_import": {"queue": "default"},
    "annotator.tasks.run_scoring": {"queue": "gpu"},
    "annotator.tasks.sweep_jobs": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
