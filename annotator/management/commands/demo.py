"""``python manage.py demo`` (``make demo``): migrate, load the demo data, and serve on
http://127.0.0.1:8000 with a Celery worker beside the web server.

Uses PostgreSQL and Redis on 127.0.0.1 when they answer; otherwise the embedded
defaults (an SQLite file and kombu's filesystem broker under ``var/``), and says so.
Settings are read when this command starts, before that choice is made, so every
step runs as a child process with the chosen database and broker in its environment.

``setup_demo --models`` queues the tiny demo models' runs (``annotator/demo_models.py``)
before the worker starts; ``setup_demo --follow`` runs beside the server, queues the
fine-tuned model's scoring run once training is done, and says when each run ends.
Nothing reaches beyond the machine: the models are built locally.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def demo_database_name(checkout: Path) -> str:
    """The PostgreSQL database of this checkout's demo: ``stepwise_`` and a short hash of
    the checkout's path, so two checkouts on one server never see each other's projects
    (``/home/a/stepwise`` -> ``stepwise_3f2a9c1e``)."""
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()
    return f"stepwise_{digest[:8]}"


def reachable(address: tuple[str, int], timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Migrate, load the demo login and data, and serve with a Celery worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("STEPWISE_HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("STEPWISE_PORT", "8000"))

    def log(self, message: str) -> None:
        self.stdout.write(f"[demo] {message}")
        self.stdout.flush()

    def environment(self) -> dict[str, str]:
        """The children's environment: the servers that answer, or the embedded defaults."""
        env = dict(os.environ)
        if "DATABASE_URL" in env:
            self.log("database: DATABASE_URL from the environment")
        elif reachable(POSTGRES):
            name = demo_database_name(settings.BASE_DIR)
            subprocess.run(
                ["createdb", "-h", POSTGRES[0], "-U", "postgres", name],
                capture_output=True,
                check=False,
            )
            env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
            self.log(f"database: PostgreSQL on 127.0.0.1:5432 (database {name!r}, this checkout's)")
        else:
            self.log(
                "database: PostgreSQL not reachable, using the embedded SQLite file "
                "var/stepwise.sqlite3"
            )
        if "CELERY_BROKER_URL" in env:
            self.log("broker: CELERY_BROKER_URL from the environment")
        elif reachable(REDIS):
            env["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/0"
            self.log("broker: Redis on 127.0.0.1:6379")
        else:
            self.log(
                "broker: Redis not reachable, using kombu's filesystem transport under var/broker"
            )
        env.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
        env.setdefault("DEBUG", "true")
        return env

    def handle(self, *args, **options) -> None:
        env = self.environment()
        for folder in (
            settings.VAR_DIR,
            settings.BROKER_DIR / "queue",
            settings.BROKER_DIR / "processed",
        ):
            os.makedirs(folder, exist_ok=True)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        self.log("migrated")
        subprocess.run([*manage, "setup_demo", "--models"], env=env, check=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator", "worker"]
            + ["-l", "warning", "-Q", "default,gpu", "--concurrency", "1"],
            env=env,
        )
        self.log(f"Celery worker started (pid {worker.pid})")
        # Not waited for: the server comes up at once, and the user watches the runs.
        follower = subprocess.Popen([*manage, "setup_demo", "--follow"], env=env)
        address = f"{options['host']}:{options['port']}"
        self.log(f"serving on http://{address}/ (Ctrl-C stops the server and the worker)")
        # A plain `kill` stops the children too: SystemExit unwinds through subprocess.call,
        # which kills the server, and through the `finally` below, which stops the worker.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            status = subprocess.call([*manage, "runserver", address, "--noreload"], env=env)
        except KeyboardInterrupt:
            return
        finally:
            follower.terminate()
            worker.terminate()
            follower.wait(timeout=20)
            worker.wait(timeout=20)
        if status != 0:
            raise CommandError(f"the web server stopped with exit status {status}")
