"""``manage.py create_project SLUG --name NAME [--owner USER] [--annotators-per-trace N]
[--scheme first_error|per_step]``: a project from the shell, ready for ``import_traces``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotator.models import LabelScheme, Membership, Project, Role


class Command(BaseCommand):
    help = "Create a project (and make USER its owner)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", help="username of the project's owner")
        parser.add_argument("--annotators-per-trace", type=int, default=1)
        parser.add_argument(
            "--scheme", choices=list(LabelScheme.values), default=LabelScheme.FIRST_ERROR
        )

    def handle(self, *args, **options) -> None:
        if options["annotators_per_trace"] < 1:
            raise CommandError("--annotators-per-trace must be at least 1")
        if Project.objects.filter(slug=options["slug"]).exists():
            raise CommandError(f"a project {options['slug']!r} exists already")
        owner = None
        if options["owner"]:
            owner = get_user_model().objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(
                    f"no user {options['owner']!r} (create one with createsuperuser, or "
                    "add_member SLUG USER --role owner --create-user after this)"
                )
        project = Project(
            slug=options["slug"],
            name=options["name"],
            annotators_per_trace=options["annotators_per_trace"],
            label_scheme=options["scheme"],
        )
        try:
            project.full_clean()
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise CommandError(problems) from None
        with transaction.atomic():
            project.save()
            if owner is not None:
                Membership.objects.create(project=project, user=owner, role=Role.OWNER)
        self.stdout.write(
            f"created project {project.slug} ({project.name}): "
            f"{project.annotators_per_trace} annotator(s) per trace, {project.label_scheme}"
            + (f", owner {owner.username}" if owner else "")
        )
