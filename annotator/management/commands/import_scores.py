"""``python manage.py import_scores PATH --project SLUG --name RUN_NAME``."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator import jobs, runs
from annotator.models import Project


class Command(BaseCommand):
    help = (
        "Store the step scores of a file that `python -m scoring score` wrote (or "
        'JSONL of {"id": ..., "scores": [...]}) as a run, matched to traces by id.'
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--name", required=True, help="the run's name")

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {options['project']!r}") from None
        path = Path(options["path"])
        try:
            with path.open("rb") as fh:
                run = runs.import_scores(project, fh, path.name, name=options["name"], user=None)
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except jobs.RunError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported run {run.name}: {run.summary['traces']} traces, "
                f"{run.summary['steps']} step scores."
            )
        )
