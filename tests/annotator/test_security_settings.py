"""Production settings refuse to run on a known key and pass ``check --deploy``; logins
are throttled; a download's file name cannot inject header parameters; API errors
are JSON."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent.parent
# What tests/settings.py relaxes for plain-HTTP testing: production has none of it.
RELAXED = ("SECRET_KEY", "DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE")
RELAXED += ("CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECRET_KEY_FILE")
# The browser tests' Playwright needs this in the suite's process; production never has it.
RELAXED += ("DJANGO_ALLOW_ASYNC_UNSAFE",)


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RELAXED}
    return env | {"DJANGO_SETTINGS_MODULE": "annotator.settings"} | extra


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def test_it_refuses_to_start_with_debug_off_and_no_secret_key() -> None:
    result = run_python("print('started')", production_env())
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "SECRET_KEY or SECRET_KEY_FILE must be set when DEBUG is off" in result.stderr


def test_it_reads_the_key_from_a_file_or_runs_with_debug_on(tmp_path: Path) -> None:
    key_file = tmp_path / "secret"
    key_file.write_text("k" * 30 + "from-a-file-" + "z" * 20 + "\n")
    show = "from django.conf import settings; print(settings.SECRET_KEY)"
    result = run_python(show, production_env(SECRET_KEY_FILE=str(key_file)))
    assert result.stdout.strip() == key_file.read_text().strip()
    missing = run_python(show, production_env(SECRET_KEY_FILE=str(tmp_path / "none")))
    assert "cannot be read" in missing.stderr
    assert run_python(show, production_env(DEBUG="true")).returncode == 0


def test_check_deploy_is_clean_under_the_production_settings() -> None:
    key = "a-production-key-" + "".join(chr(65 + i % 26) for i in range(60))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(SECRET_KEY=key, STEPWISE_CACHE_URL="redis://127.0.0.1:6379/9"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def check_deploy(**env: str) -> str:
    key = "a-production-key-" + "".join(chr(65 + i % 26) for i in range(60))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=production_env(SECRET_KEY=key, **env),
        capture_output=True,
        text=True,
    )
    return result.stdout + result.stderr


def test_check_deploy_warns_when_the_login_counts_are_per_process() -> None:
    """Without a shared cache each web process counts its own failures."""
    assert "stepwise.W001" in check_deploy()
    assert "stepwise.W001" not in check_deploy(STEPWISE_CACHE_URL="redis://127.0.0.1:6379/9")


def test_check_deploy_warns_behind_a_proxy_whose_forwarded_address_is_not_trusted() -> None:
    shared = {"STEPWISE_CACHE_URL": "redis://127.0.0.1:6379/9", "STEPWISE_BEHIND_TLS_PROXY": "1"}
    assert "stepwise.W002" in check_deploy(**shared)
    assert "stepwise.W002" not in check_deploy(**shared, STEPWISE_TRUSTED_PROXY_COUNT="1")


@pytest.fixture
def fresh_throttle():
    cache.clear()
    yield
    cache.clear()


def test_logins_are_throttled_after_repeated_failures(client, users, fresh_throttle) -> None:
    """30 wrong passwords, then the right one: refused, with a message saying why."""
    url = reverse("login")
    for i in range(30):
        response = client.post(url, {"username": "alan", "password": f"guess-{i}"})
        assert response.status_code == 200
    response = client.post(url, {"username": "alan", "password": "pw-alan-123"}, follow=True)
    assert not response.wsgi_request.user.is_authenticated
    assert b"Too many failed logins" in response.content
    # Another account from the same address is not locked by these 30.
    response = client.post(url, {"username": "rita", "password": "pw-rita-123"})
    assert response.status_code == 302


def fail_from(client, address: str, times: int) -> None:
    """``times`` wrong passwords for as many unknown accounts, from ``address`` as the
    proxy in front records it (the connection is the proxy's, 127.0.0.1)."""
    for i in range(times):
        response = client.post(
            reverse("login"),
            {"username": f"guess-{address}-{i}", "password": "x"},
            HTTP_X_FORWARDED_FOR=address,
        )
        assert response.status_code == 200


def logs_in(client, username: str, password: str, address: str) -> bool:
    response = client.post(
        reverse("login"),
        {"username": username, "password": password},
        HTTP_X_FORWARDED_FOR=address,
    )
    client.logout()
    return response.status_code == 302


def test_behind_a_trusted_proxy_an_address_lock_locks_that_address_only(
    client, users, fresh_throttle, settings
) -> None:
    """50 failures from one client behind the proxy: everyone else still logs in."""
    settings.TRUSTED_PROXY_COUNT = 1
    fail_from(client, "203.0.113.9", settings.LOGIN_FAILURE_LIMIT_PER_IP)
    assert logs_in(client, "alan", "pw-alan-123", "198.51.100.7")
    assert logs_in(client, "rita", "pw-rita-123", "spoofed, 198.51.100.8")
    assert not logs_in(client, "alan", "pw-alan-123", "203.0.113.9")
    # The client's own entries left of the proxy's are not believed.
    assert not logs_in(client, "alan", "pw-alan-123", "198.51.100.7, 203.0.113.9")


def test_a_forwarded_address_is_ignored_unless_configured(client, users, fresh_throttle) -> None:
    """Without TRUSTED_PROXY_COUNT a client cannot dodge the address lock by naming a
    fresh address per guess: the connection's address counts."""
    for n in range(5):
        fail_from(client, f"192.0.2.{n}", 10)
    assert not logs_in(client, "alan", "pw-alan-123", "198.51.100.7")


def test_an_account_lock_holds_from_every_address(client, users, fresh_throttle, settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        client.post(
            reverse("login"),
            {"username": "alan", "password": f"guess-{i}"},
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
        )
    assert not logs_in(client, "alan", "pw-alan-123", "198.51.100.7")
    assert logs_in(client, "rita", "pw-rita-123", "198.51.100.7")


def test_a_few_failures_do_not_lock_an_account(client, users, fresh_throttle) -> None:
    url = reverse("login")
    for i in range(3):
        client.post(url, {"username": "alan", "password": f"typo-{i}"})
    assert client.post(url, {"username": "alan", "password": "pw-alan-123"}).status_code == 302


@pytest.mark.parametrize(
    "split", ['a"; filename="evil.html', "a\r\nSet-Cookie: x=1", "a\nb", "ä/../x"]
)
def test_a_split_cannot_inject_into_the_download_header(client_for, users, project, split) -> None:
    response = client_for(users["owner"]).get(
        reverse("export", args=["gsm8k"]), {"format": "jsonl", "split": split}
    )
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert disposition.count("filename=") == 1
    assert disposition.startswith('attachment; filename="gsm8k-jsonl-')
    assert not {'"', "\r", "\n", "/"} & set(disposition.split('filename="', 1)[1][:-1])
    assert "Set-Cookie" not in response


def test_an_unknown_api_url_answers_json(client_for, users, db) -> None:
    response = client_for(users["owner"]).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"
    page = client_for(users["owner"]).get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_compose_has_no_insecure_defaults_and_threaded_gunicorn() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("web", "worker", "gpu-worker"):
        env = services[name]["environment"]
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), name  # required, no default
        assert env["ALLOWED_HOSTS"].startswith("${ALLOWED_HOSTS:?"), name
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"], name
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_")
    command = services["web"]["command"]
    assert "--worker-class gthread" in command and "--threads" in command
    assert "--timeout" in command


def test_a_malformed_session_cookie_is_no_session(client, db) -> None:
    """A NUL byte in the cookie reached PostgreSQL: a 500 on every page."""
    client.cookies["sessionid"] = "abc\x00defghijklmnop"
    assert client.get("/").status_code == 302  # to the login page, as with no session
    assert client.get("/api/v1/projects/").status_code in (401, 403)
