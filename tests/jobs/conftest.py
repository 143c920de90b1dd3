"""Fixtures that start real Celery workers (``tests/workers.py``) on an emptied broker."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.workers import Worker


@pytest.fixture(scope="session")
def flush_broker():
    from annotator.celery import app

    assert settings.CELERY_BROKER_URL.startswith("redis://"), "job tests need the Redis broker"
    app.connection_for_write().default_channel.client.flushdb()  # stale messages of earlier runs


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker, flush_broker):
    """One worker on "default" for a module's tests; stopped after the module, so the
    fault tests' own workers are the only ones on the queue."""
    worker = Worker("default")
    yield worker
    worker.stop()


@pytest.fixture
def workers(django_db_setup, flush_broker):
    """``workers(name, queues=...)`` starts a worker that the test may kill; every
    worker still alive at the end is stopped."""
    started: list[Worker] = []

    def start(name: str, **kwargs) -> Worker:
        worker = Worker(name, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
