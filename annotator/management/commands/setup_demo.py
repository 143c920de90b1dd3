"""Create the demo login and project, import the demo data, and score it with the
``arithmetic-check`` scorer in this process (no model, seconds on a CPU), so the
dashboard and the trace pages have scores on a first visit. With ``--models``, build the
demo's tiny models and queue their runs for the worker (``annotator/demo_models.py``); with
``--follow``, wait for the training run and queue the fine-tuned model's scoring run.
Idempotent."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotator import demo_models, jobs, runs
from annotator.importing import import_file
from annotator.models import JobStatus, Membership, Project, Role, Scorer, ScoringRun

DEMO_SCORER = "arithmetic-check"
DEMO_FILES = [
    ("processbench-gsm8k/gsm8k.json", "processbench"),
    ("gsm8k/example_model_solutions.jsonl", "gsm8k-solutions"),
]


class Command(BaseCommand):
    help = (
        "Create the demo user and project, import ProcessBench GSM8K and the GSM8K model "
        "solutions, and score them with arithmetic-check."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data-dir", default=str(settings.BASE_DIR.parent / "shared" / "data"))
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="stepwise-demo")
        parser.add_argument(
            "--models",
            action="store_true",
            help="Also build the tiny demo models and queue their runs for a worker "
            "(manage.py demo asks for them).",
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="Only wait for the demo's training run, queue the fine-tuned model's "
            "scoring run, and wait for the demo's model runs (a worker must be running).",
        )

    def handle(self, *args, **options):
        if options["follow"]:
            project = Project.objects.get(slug="gsm8k-demo")
            user = get_user_model().objects.get(username=options["username"])
            if not demo_models.follow_training(project, user, self.log):
                raise CommandError("the demo's model runs did not all finish")
            return
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
        self.score_demo(project, user)
        if options["models"] and project.traces.exists():
            demo_models.queue_model_runs(project, user, self.log)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo login: username {options['username']!r}, password {options['password']!r} "
                f"(project /p/{project.slug}/)"
            )
        )

    def log(self, message: str) -> None:
        self.stdout.write(f"[demo] {message}")
        self.stdout.flush()

    def score_demo(self, project: Project, user) -> None:
        """One finished ``arithmetic-check`` run over every trace of the demo project."""
        scorer, _ = Scorer.objects.get_or_create(
            name=DEMO_SCORER, defaults={"adapter": "arithmetic-check", "created_by": user}
        )
        run = ScoringRun.objects.filter(project=project, name=DEMO_SCORER).first()
        if run is not None and run.status == JobStatus.DONE:
            return
        if run is None:
            if not project.traces.exists():
                return
            run = runs.create_run(project, scorer, user, name=DEMO_SCORER, shard_traces=0)
        # In this process, not on a worker: the demo's worker may not be up yet, and
        # re-computing arithmetic takes seconds.
        jobs.execute(ScoringRun, run.pk, runs.run_scoring_job)
        run.refresh_from_db()
        self.stdout.write(f"run {run.name}: {run.get_status_display()} {run.summary}")
