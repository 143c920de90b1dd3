"""Starting the reward service as a real process on loopback, for tests and the benchmark."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: in a whole-suite run the browser tests'
    session-scoped Playwright keeps an event loop running in the main thread, where
    ``asyncio.run`` refuses to start another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``argv`` (a command that serves on ``port``) run from the repository root; started
    and waited for until ``/health`` answers."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.env = env or dict(os.environ)
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ServiceProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log.read_text() if self.log else ""
                raise RuntimeError(f"{self.argv} exited {self.process.returncode}\n{log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.argv} did not answer /health in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def scoring_serve(model: Path, port: int, *args: str) -> list[str]:
    """The ``python -m scoring serve`` command line for a Qwen-PRM directory on CPU."""
    return [
        sys.executable,
        "-m",
        "scoring",
        "serve",
        "--adapter",
        "qwen-prm",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--port",
        str(port),
        *args,
    ]


def kill_under_load(
    service: ServiceProcess,
    items: list[dict],
    answered_before_kill: int,
    while_down: Callable[[int], None] = lambda answered: None,
) -> dict[int, dict]:
    """Each item sent by a client thread of its own (the HTTP client, retrying as the
    trainers' clients do); the service SIGKILLed once ``answered_before_kill`` have their
    answers, ``while_down(answered so far)`` called, the service started again. Every
    item's answer by index, once all clients are done; a client's error fails the test."""
    from scoring.reward_clients.http import RewardClient

    answers: dict[int, dict] = {}
    errors: list[BaseException] = []
    answered = threading.Semaphore(0)

    def client(i: int) -> None:
        try:
            answers[i] = RewardClient(service.url, backoff_s=0.2, retries=60).rewards([items[i]])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        answered.release()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for _ in range(answered_before_kill):  # some answered, most still waiting: kill it now
        answered.acquire()
    service.kill()
    answered_before = len(answers)
    assert answered_before < len(items)
    while_down(answered_before)
    service.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    assert len(answers) == len(items)
    return answers
