"""Create the demo login and project and import the demo data (idempotent)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from annotator.importing import import_file
from annotator.models import Membership, Project, Role

DEMO_FILES = [
    ("processbench-gsm8k/gsm8k.json", "processbench"),
    ("gsm8k/example_model_solutions.jsonl", "gsm8k-solutions"),
]


class Command(BaseCommand):
    help = "Create the demo user and project, and import ProcessBench GSM8K and the GSM8K model solutions."

    def add_arguments(self, parser):
        parser.add_argument("--data-dir", default=str(settings.BASE_DIR.parent / "shared" / "data"))
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="stepwise-demo")

    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=options["username"], defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(options["password"])
            user.save()
        project, _ = Project.objects.get_or_create(
            slug="gsm8k-demo",
            defaults={
                "name": "GSM8K demo",
                "guidelines": "Mark the first step that is wrong (a calculation, a misread fact, "
                "a wrong plan), or mark the solution all correct.",
                "annotators_per_trace": 2,
            },
        )
        Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.OWNER})
        data_dir = Path(options["data_dir"])
        for relative, fmt in DEMO_FILES:
            path = data_dir / relative
            if not path.exists():
                self.stderr.write(self.style.WARNING(f"{path} not found; skipped"))
                continue
            summary = import_file(project, path, fmt)
            self.stdout.write(f"{relative}: {summary}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo login: username {options['username']!r}, password {options['password']!r} "
                f"(project /p/{project.slug}/)"
            )
        )
