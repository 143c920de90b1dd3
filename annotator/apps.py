from __future__ import annotations

from django.apps import AppConfig


class AnnotatorConfig(AppConfig):
    name = "annotator"
    verbose_name = "Stepwise"

    def ready(self) -> None:
        from annotator import checks  # noqa: F401  (registers the deploy checks)
