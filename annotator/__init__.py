"""Stepwise: the Django project and its one app."""

from __future__ import annotations

from annotator.celery import app as celery_app

__all__ = ["celery_app"]
