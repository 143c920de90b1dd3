"""``python manage.py add_scorer NAME --adapter ADAPTER [--model PATH_OR_ID] [--option k=v ...]``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotator.models import Scorer
from scoring.adapters import ADAPTERS
from scoring.cli import parse_option


class Command(BaseCommand):
    help = "Register a scorer: a scoring adapter with its model and options."

    def add_arguments(self, parser):
        parser.add_argument("name", help="a short slug, e.g. qwen-prm-7b")
        parser.add_argument("--adapter", required=True, choices=sorted(ADAPTERS))
        parser.add_argument("--model", default="", help="hub id or a path on the workers' disk")
        parser.add_argument("--revision", default="", help="hub revision (branch, tag or commit)")
        parser.add_argument(
            "--option",
            action="append",
            default=[],
            type=parse_option,
            metavar="KEY=VALUE",
            help="threshold, device, dtype, batch_tokens, or an option of the adapter",
        )
        parser.add_argument("--replace", action="store_true", help="update a scorer of that name")

    def handle(self, *args, **options):
        existing = Scorer.objects.filter(name=options["name"]).first()
        if existing and not options["replace"]:
            raise CommandError(f"a scorer named {options['name']!r} exists (use --replace)")
        scorer = existing or Scorer(name=options["name"])
        scorer.adapter = options["adapter"]
        scorer.model = options["model"]
        scorer.revision = options["revision"]
        scorer.options = dict(options["option"])
        try:
            scorer.full_clean(exclude=["created_by"])
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise CommandError(problems) from None
        scorer.save()
        verb = "Updated" if existing else "Registered"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} scorer {scorer.name} ({scorer.adapter}, queue {scorer.queue})."
            )
        )
