"""Shared fixtures: one project with an owner, a reviewer, an annotator and an outsider."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.factories import DATA_DIR, ROOT, sqlite_env


def pytest_sessionfinish(session) -> None:
    """A parallel test process removes the temporary folder of its own that
    ``tests/settings.py`` gave it."""
    folder = Path(tempfile.gettempdir())
    if folder.name.startswith("stepwise-tests-"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Real login flows, without PBKDF2's deliberate slowness on every test user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def data_dir() -> Path:
    assert DATA_DIR.is_dir(), f"the shared data folder is missing: {DATA_DIR}"
    return DATA_DIR


@pytest.fixture
def users(db, django_user_model):
    make = django_user_model.objects.create_user
    return {
        "owner": make("olive", password="pw-olive-123"),
        "reviewer": make("rita", password="pw-rita-123"),
        "annotator": make("alan", password="pw-alan-123"),
        "outsider": make("oscar", password="pw-oscar-123"),
    }


@pytest.fixture
def project(users):
    from annotator.models import Membership, Project, Role

    project = Project.objects.create(slug="gsm8k", name="GSM8K labels")
    Membership.objects.create(project=project, user=users["owner"], role=Role.OWNER)
    Membership.objects.create(project=project, user=users["reviewer"], role=Role.REVIEWER)
    Membership.objects.create(project=project, user=users["annotator"], role=Role.ANNOTATOR)
    return project


@pytest.fixture
def client_for(client):
    """``client_for(user)``: the test client logged in as ``user``."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(scope="session")
def tiny_qwen_prm(tmp_path_factory) -> Path:
    """A Qwen2.5-Math-PRM-shaped checkpoint with random weights (``scoring.tiny``)."""
    from scoring.tiny import build_qwen_prm

    return build_qwen_prm(tmp_path_factory.mktemp("tiny-qwen-prm"))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite database with every migration applied, made once per test process: the
    tests on the embedded path copy it (``sqlite_var``) rather than migrate their own."""
    var = tmp_path_factory.mktemp("sqlite-migrated")
    manage = [sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"]
    subprocess.run(manage, cwd=var, env=sqlite_env(var), check=True)
    return var / "stepwise.sqlite3"


@pytest.fixture
def sqlite_var(tmp_path, migrated_sqlite) -> Path:
    """A var folder for a child process on the embedded path (``factories.sqlite_env``),
    holding a copy of the migrated SQLite database."""
    var = tmp_path / "var"
    var.mkdir()
    shutil.copyfile(migrated_sqlite, var / "stepwise.sqlite3")
    return var
