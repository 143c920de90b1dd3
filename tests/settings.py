"""The suite's settings: the production settings (DEBUG off, a secret key required),
served on plain HTTP as the test client, the loopback servers and Chromium use it.

Set in the environment, not only here, so the workers and servers the tests start as
subprocesses (with ``annotator.settings``) get the same values.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "stepwise-tests-only-key-never-used-outside-the-test-suite")
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")

# Under pytest-xdist each test process gets a broker database and a var folder of its own
# (as pytest-django gives it a test database of its own): the job tests flush their broker
# and the workers they start share its queues. Set in the environment because Celery
# prefers CELERY_BROKER_URL there to the settings, in this process and in the workers.
_xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist.startswith("gw") and not os.environ.get("STEPWISE_XDIST_APPLIED"):
    _index = int(_xdist[2:])
    _broker, _, _db = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15").rpartition(
        "/"
    )
    os.environ["CELERY_BROKER_URL"] = f"{_broker}/{(int(_db) - _index) % 16}"
    os.environ["STEPWISE_VAR_DIR"] = os.path.join(
        os.environ.get("STEPWISE_VAR_DIR", os.path.join(os.getcwd(), "var", "test")), _xdist
    )
    # A temporary folder of its own, for this process and what it starts (tempfile
    # caches the folder on first use, so it is set there too): the sandbox's tests
    # find their runs' processes by the job folder on their command line.
    _tmp = os.path.join(
        tempfile.gettempdir(),
        f"stepwise-tests-{os.environ.get('PYTEST_XDIST_TESTRUNUID', '')[:8]}-{_xdist}",
    )
    os.makedirs(_tmp, exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = _tmp
    # One thread per torch process: several test processes and the workers they start
    # share the cores, and torch's spinning intra-op threads would fight over them.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["STEPWISE_XDIST_APPLIED"] = "1"

from annotator.settings import *  # noqa: E402, F403
