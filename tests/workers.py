"""Real Celery worker processes on the Redis broker, against the test database.

Workers here heartbeat every 0.5 s and count a job as abandoned after 3 s of
silence, so the fault tests see a dead worker's job taken up within seconds.
The job tests' fixtures start them (``tests/jobs/conftest.py``), and so do the
browser tests'.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from django.conf import settings

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
JOB_TIMING = {"STEPWISE_JOB_HEARTBEAT_SECONDS": "0.5", "STEPWISE_JOB_STALE_SECONDS": "3"}


def worker_env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    return (
        os.environ
        | {
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        }
        | JOB_TIMING
        | extra
    )


class Worker:
    """A ``celery worker`` in its own process group, so a test can kill the whole
    worker (main process and pool) as a crashed machine would, or one pool child."""

    def __init__(self, name: str, queues: str = "default", concurrency: int = 1, **env: str):
        from annotator.celery import app

        self.name = f"{name}-{os.getpid()}@test"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--quiet",
                "-A",
                "annotator",
                "worker",
                "-l",
                "warning",
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "-Q",
                queues,
                "-n",
                self.name,
            ],
            cwd=ROOT,
            env=worker_env(**env),
            start_new_session=True,
        )
        pinger = app if "CELERY_BROKER_URL" not in env else _app_on(env["CELERY_BROKER_URL"])
        deadline = time.monotonic() + 60
        while not pinger.control.ping(destination=[self.name], timeout=1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the Celery worker {self.name} did not start")

    def pool_children(self) -> list[int]:
        return [
            int(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit() and _parent_of(int(pid)) == self.process.pid
        ]

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _app_on(broker_url: str):
    """A Celery app that talks to ``broker_url``, for a worker on a broker of the test's
    own. Celery prefers the CELERY_BROKER_URL variable (the shared broker's, here) to an
    app's ``broker_url``, but not to its read and write URLs."""
    from celery import Celery

    app = Celery(set_as_current=False)
    app.conf.broker_read_url = app.conf.broker_write_url = broker_url
    return app


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may hold spaces: split after it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def wait_for(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.2) -> T:
    """The first truthy value of ``predicate()``, polled while a worker process works."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
