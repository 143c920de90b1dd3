"""``manage.py add_member SLUG USER --role ROLE [--create-user]``: invite someone from
the shell. With ``--create-user`` a missing user is made with a random password,
printed once, for them to change."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotator.models import Membership, Project, Role


class Command(BaseCommand):
    help = "Add a user to a project with a role (or change their role)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=list(Role.values))
        parser.add_argument("--create-user", action="store_true")

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"no project {options['slug']!r} (create_project makes one)")
        User = get_user_model()
        password = None
        with transaction.atomic():
            user = User.objects.filter(username=options["username"]).first()
            if user is None:
                if not options["create_user"]:
                    raise CommandError(f"no user {options['username']!r}; --create-user makes one")
                password = secrets.token_urlsafe(12)
                user = User.objects.create_user(options["username"], password=password)
            owners = project.memberships.filter(role=Role.OWNER)
            if (
                options["role"] != Role.OWNER
                and owners.filter(user=user).exists()
                and owners.count() == 1
            ):
                raise CommandError(f"{user.username} is the only owner; add another owner first")
            Membership.objects.update_or_create(
                project=project, user=user, defaults={"role": options["role"]}
            )
        self.stdout.write(f"{user.username} is now {options['role']} of {project.slug}")
        if password:
            self.stdout.write(f"created user {user.username} with password: {password}")
