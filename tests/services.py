"""Finding PostgreSQL and Redis for the tests, and starting them on a developer
machine where they are installed but stopped."""

from __future__ import annotations

import glob
import shutil
import subprocess
import time

from annotator.management.commands.demo import POSTGRES, REDIS, reachable

__all__ = ["POSTGRES", "REDIS", "ensure"]


def _start_commands(name: str) -> list[list[str]]:
    if name == "postgres":
        versions = sorted(glob.glob("/etc/postgresql/*"))
        if versions and shutil.which("pg_ctlcluster"):
            version = versions[-1].rsplit("/", 1)[1]
            return [["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]]
        return []
    if name == "redis" and shutil.which("redis-server"):
        return [
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        ]
    return []


def ensure(name: str, address: tuple[str, int], *, start: bool = True, wait: float = 15) -> bool:
    """True when the service answers, after trying to start it if allowed."""
    if reachable(address):
        return True
    if not start:
        return False
    for command in _start_commands(name):
        subprocess.run(command, check=False, capture_output=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if reachable(address):
            return True
        time.sleep(0.3)
    return False
