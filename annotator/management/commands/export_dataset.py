"""``python manage.py export_dataset --project SLUG --format FMT --out PATH``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotator.exporting import EXPORT_FORMATS, LABEL_SOURCES, score_runs_named, write_export
from annotator.models import Project


class Command(BaseCommand):
    help = "Export a project's labelled traces as JSONL (or parquet when --out ends in .parquet)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
        parser.add_argument(
            "--out", required=True, help="output path; .parquet writes parquet, anything else JSONL"
        )
        parser.add_argument("--split", help="only traces of this split")
        parser.add_argument(
            "--labels",
            default="human",
            metavar="|".join(LABEL_SOURCES) + "|SET",
            help="human labels, reviewers' only, or a label set by name",
        )
        parser.add_argument(
            "--scores",
            metavar="all|RUN[,RUN]",
            help='jsonl only: add "step_scores": {run name: [...]} from these scoring runs',
        )

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {options['project']!r}") from None
        try:
            score_runs = score_runs_named(project, options["scores"]) if options["scores"] else []
            summary = write_export(
                project,
                options["format"],
                options["out"],
                split=options["split"],
                labels=options["labels"],
                score_runs=score_runs,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{options['out']}: {summary}."))
