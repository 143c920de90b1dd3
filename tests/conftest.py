"""Shared fixtures: one project with an owner, a reviewer, an annotator and an outsider."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import DATA_DIR


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
