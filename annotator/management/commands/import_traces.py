"""``python manage.py import_traces PATH --project SLUG [--format auto|...]``."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotator.importing import import_file
from annotator.models import Project
from scoring.formats import FORMATS, ImportFormatError
from scoring.steps import SPLITTERS


class Command(BaseCommand):
    help = "Import reasoning traces (and their labels) from a file into a project."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", default="auto", choices=("auto", *FORMATS))
        parser.add_argument(
            "--source",
            help="source name; with each record's id it makes re-imports idempotent (default: the format)",
        )
        parser.add_argument(
            "--split",
            default="",
            help="split for every trace (default: from the records or the file name)",
        )
        parser.add_argument(
            "--step-splitter",
            default="paragraphs",
            choices=tuple(SPLITTERS),
            help="how the jsonl format splits a solution string into steps",
        )

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {options['project']!r}") from None
        bar = tqdm(unit=" records", disable=options["verbosity"] == 0 or None, file=sys.stderr)

        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            summary = import_file(
                project,
                options["path"],
                options["format"],
                source=options["source"],
                split=options["split"],
                step_splitter=options["step_splitter"],
                progress=progress,
            )
        except ImportFormatError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from None
        except FileNotFoundError:
            raise CommandError(f"{options['path']}: no such file") from None
        finally:
            bar.close()
        self.stdout.write(self.style.SUCCESS(f"Imported {summary}."))
