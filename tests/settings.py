"""The suite's settings: the production settings (DEBUG off, a secret key required),
served on plain HTTP as the test client, the loopback servers and Chromium use it.

Set in the environment, not only here, so the workers and servers the tests start as
subprocesses (with ``annotator.settings``) get the same values.
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "stepwise-tests-only-key-never-used-outside-the-test-suite")
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")

from annotator.settings import *  # noqa: E402, F403
