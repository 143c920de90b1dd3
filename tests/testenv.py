"""``python -m tests.testenv pytest ...`` (``make test``): run the suite against
PostgreSQL and Redis.

Starts them if they are installed but stopped, fails loudly if they cannot be
reached (the suite never falls back to SQLite), and points the settings at them.
"""

from __future__ import annotations

import os
import sys

from tests.services import POSTGRES, REDIS, ensure


def main(argv: list[str]) -> int:
    missing = [
        name
        for name, service, address in (
            ("PostgreSQL", "postgres", POSTGRES),
            ("Redis", "redis", REDIS),
        )
        if not ensure(service, address)
    ]
    if missing:
        print(
            f"The tests need {' and '.join(missing)} on 127.0.0.1; could not reach or start them.",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stepwise")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    os.environ.setdefault("STEPWISE_VAR_DIR", os.path.join(os.getcwd(), "var", "test"))
    # The suite's settings (tests/settings.py), also for the workers and servers it starts;
    # set outright, since importing the app above already defaulted it to the app's own.
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if not argv:
        argv = ["pytest"]
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
