"""With the broker down, starting a job answers a clear error and leaves nothing
queued: a real web server process talks to a real Redis that the test kills."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from django.core.files.storage import default_storage
from rest_framework.authtoken.models import Token

from annotator.jobs import BROKER_DOWN
from annotator.models import ImportJob, JobStatus
from tests.workers import ROOT, worker_env

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

RECORD = json.dumps({"id": "x-1", "problem": "1+1?", "steps": ["2"], "label": -1}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port}")


def start_redis(port: int) -> subprocess.Popen:
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_until_listening(port, redis)
    return redis


@pytest.fixture
def broker_and_site():
    """A Redis of the test's own, and the site served by a real server process that
    uses it as its broker."""
    redis_port, web_port = free_port(), free_port()
    redis = start_redis(redis_port)
    env = worker_env(CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0")
    web = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{web_port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_listening(web_port, web)
    state = {"redis": redis, "redis_port": redis_port, "url": f"http://127.0.0.1:{web_port}"}
    yield state
    web.terminate()
    web.wait(timeout=30)
    state["redis"].kill()
    state["redis"].wait(timeout=30)


def multipart(fields: dict[str, str], file_name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def send(url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_broker_down_gives_a_503_and_a_message_and_leaves_nothing_queued(
    broker_and_site, users, project, client
):
    site = broker_and_site["url"]
    token = Token.objects.create(user=users["owner"])
    client.force_login(users["owner"])
    session = client.cookies["sessionid"].value
    status, headers, _ = send(
        f"{site}/p/{project.slug}/import/", headers={"Cookie": f"sessionid={session}"}
    )
    assert status == 200
    csrf = headers["Set-Cookie"].split("csrftoken=", 1)[1].split(";", 1)[0]

    broker_and_site["redis"].kill()
    broker_and_site["redis"].wait(timeout=30)

    body, content_type = multipart({"format": "auto"}, "one.jsonl", RECORD)
    status, headers, content = send(
        f"{site}/api/v1/projects/{project.slug}/imports/",
        body,
        {"Authorization": f"Token {token.key}", "Content-Type": content_type},
    )
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content) == {"detail": BROKER_DOWN, "code": "broker_unavailable"}

    body, content_type = multipart(
        {"format": "auto", "step_splitter": "paragraphs", "split": ""}, "one.jsonl", RECORD
    )
    status, _, content = send(
        f"{site}/p/{project.slug}/import/",
        body,
        {
            "Cookie": f"sessionid={session}; csrftoken={csrf}",
            "X-CSRFToken": csrf,
            "Content-Type": content_type,
        },
    )
    assert status == 503
    assert BROKER_DOWN.encode() in content.replace(b"&#x27;", b"'")

    jobs = list(ImportJob.objects.all())
    assert len(jobs) == 2
    assert {job.status for job in jobs} == {JobStatus.FAILED}
    assert all(job.error == BROKER_DOWN for job in jobs)
    assert not any(default_storage.exists(job.upload) for job in jobs)

    # Once the broker is back, a retry reaches it (the upload is gone, so it says so).
    broker_and_site["redis"] = start_redis(broker_and_site["redis_port"])
    status, _, content = send(
        f"{site}/api/v1/projects/{project.slug}/imports/{jobs[0].pk}/retry/",
        b"",
        {"Authorization": f"Token {token.key}"},
    )
    assert status == 409
    assert json.loads(content)["detail"] == "The uploaded file is gone; upload it again."
    body, content_type = multipart({"format": "auto"}, "one.jsonl", RECORD)
    status, _, content = send(
        f"{site}/api/v1/projects/{project.slug}/imports/",
        body,
        {"Authorization": f"Token {token.key}", "Content-Type": content_type},
    )
    assert status == 202
    assert json.loads(content)["status"] == "queued"
