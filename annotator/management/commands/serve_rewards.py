"""``python manage.py serve_rewards --scorer NAME [--log-project SLUG] [service options]``.

The reward service (``scoring.reward_service``, the same as ``python -m scoring serve``) on
a registered scorer's model, with the scorer's threshold and batch size unless the options
say otherwise. With ``--log-project`` every scored rollout is handed, in batches and from a
thread of the service's own (an answer never waits on the database), to
``annotator.rollouts.log_rollouts``, which writes each rollout once whatever the retries.
Before its answer goes out each rollout is on disk in a journal (``--log-journal``,
default ``VAR_DIR/reward-journals/SLUG``) that a restarted service replays, so a kill
loses none (``scoring.rollout_journal``).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotator.models import Project, Scorer


class Command(BaseCommand):
    help = "Serve a registered scorer as a reward service for RL trainers."

    def add_arguments(self, parser):
        from scoring.reward_service import add_service_arguments

        parser.add_argument("--scorer", required=True, help="scorer name (see add_scorer)")
        parser.add_argument(
            "--log-project", help="project slug: every scored rollout becomes one of its traces"
        )
        parser.add_argument("--device", default=None, help="cpu, cuda (default: the scorer's)")
        add_service_arguments(parser)

    def handle(self, *args, **options):
        from argparse import Namespace

        from django.conf import settings as django_settings

        from annotator.scorers import load_scorer
        from scoring.reward_service import serve, settings_from_args
        from scoring.rollout_journal import JournalInUse

        try:
            scorer = Scorer.objects.get(name=options["scorer"])
        except Scorer.DoesNotExist:
            raise CommandError(f"no scorer named {options['scorer']!r}") from None
        run_options = {
            key: scorer.options[key]
            for key in ("threshold", "batch_tokens")
            if key in scorer.options
        }
        settings = settings_from_args(
            # a log's source is at most 64 characters
            Namespace(**options),
            f"reward-service:{scorer.name}"[:64],
            **run_options,
        )
        try:
            settings.check()
        except ValueError as exc:
            raise CommandError(f"bad transform settings: {exc}") from None
        log = journal = None
        if options["log_project"]:
            log = self._rollout_writer(options["log_project"])
            journal = options["log_journal"] or (
                django_settings.VAR_DIR / "reward-journals" / options["log_project"]
            )
        elif options["log_journal"]:
            raise CommandError("--log-journal needs --log-project")
        loader_options = dict(scorer.options)
        if options["device"]:
            loader_options["device"] = options["device"]
        adapter = load_scorer(scorer.adapter, scorer.model, scorer.revision, loader_options)
        try:
            serve(
                adapter,
                settings,
                host=options["host"],
                port=options["port"],
                token=options["token"],
                log=log,
                max_body_bytes=options["max_body_bytes"],
                max_items=options["max_items"],
                journal=journal,
            )
        except (ValueError, JournalInUse) as exc:
            raise CommandError(str(exc)) from None

    def _rollout_writer(self, slug: str):
        if not Project.objects.filter(slug=slug).exists():
            raise CommandError(f"no project with slug {slug!r}")
        try:
            from annotator.rollouts import log_rollouts
        except ModuleNotFoundError as exc:
            if exc.name != "annotator.rollouts":
                raise
            raise CommandError(
                "this installation cannot log rollouts (no annotator.rollouts)"
            ) from None
        from django.db import close_old_connections

        def write(records: list[dict]) -> int:
            # The log's own thread: a connection a failed write broke is replaced.
            close_old_connections()
            return log_rollouts(slug, records)

        return write
