"""``python -m annotator.demo`` (``make demo``): migrate, load the demo data, and serve
on http://127.0.0.1:8000 with a Celery worker beside the web server.

Uses PostgreSQL and Redis on 127.0.0.1 when they answer; otherwise the embedded
defaults (an SQLite file and kombu's filesystem broker under ``var/``), and says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from annotator.services_check import POSTGRES, REDIS, reachable

HOST = os.environ.get("STEPWISE_HOST", "127.0.0.1")
PORT = os.environ.get("STEPWISE_PORT", "8000")


def _log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def configure() -> None:
    if "DATABASE_URL" not in os.environ:
        if reachable(POSTGRES):
            subprocess.run(
                ["createdb", "-h", POSTGRES[0], "-U", "postgres", "stepwise"],
                capture_output=True,
                check=False,
            )
            os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/stepwise"
            _log("database: PostgreSQL on 127.0.0.1:5432 (database 'stepwise')")
        else:
            _log(
                "database: PostgreSQL not reachable, using the embedded SQLite file var/stepwise.sqlite3"
            )
    else:
        _log("database: DATABASE_URL from the environment")
    if "CELERY_BROKER_URL" not in os.environ:
        if reachable(REDIS):
            os.environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/0"
            _log("broker: Redis on 127.0.0.1:6379")
        else:
            _log("broker: Redis not reachable, using kombu's filesystem transport under var/broker")
    else:
        _log("broker: CELERY_BROKER_URL from the environment")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    os.environ.setdefault("DEBUG", "true")


def main() -> int:
    configure()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    for folder in (
        settings.VAR_DIR,
        settings.BROKER_DIR / "queue",
        settings.BROKER_DIR / "processed",
    ):
        os.makedirs(folder, exist_ok=True)
    call_command("migrate", verbosity=0)
    _log("migrated")
    call_command("setup_demo")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "annotator",
            "worker",
            "-l",
            "warning",
            "-Q",
            "default",
            "--concurrency",
            "1",
        ],
    )
    _log(f"Celery worker started (pid {worker.pid})")
    _log(f"serving on http://{HOST}:{PORT}/ (Ctrl-C stops the server and the worker)")
    # A plain `kill` stops the children too: SystemExit unwinds through subprocess.call,
    # which kills the server, and through the `finally` below, which stops the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return subprocess.call(
            [sys.executable, "manage.py", "runserver", f"{HOST}:{PORT}", "--noreload"]
        )
    except KeyboardInterrupt:
        return 0
    finally:
        worker.terminate()
        worker.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
