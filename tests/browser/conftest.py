"""Playwright driving Debian's Chromium (``/usr/bin/chromium``), headless, against
pytest-django's live server. No browser is ever downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.workers import Worker

# Playwright's sync API runs an event loop in the test thread; the test's own ORM
# calls (set-up and checks) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"install Debian's chromium: {CHROMIUM} is missing"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_server):
    """``new_page(username, password)``: a logged-in page in its own browser context."""
    contexts = []

    def open_page(username: str, password: str):
        context = browser.new_context()
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker on queue "default" against the live server's database
    (``tests/workers.py``), started on an emptied broker so that no message left by
    earlier tests reaches it."""
    from annotator.celery import app

    app.connection_for_write().default_channel.client.flushdb()
    worker = Worker("browser", queues="default")
    yield worker
    worker.stop()
