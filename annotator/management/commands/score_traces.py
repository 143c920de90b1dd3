"""``python manage.py score_traces --project SLUG --scorer NAME [--split S] [--now]``.

Without ``--now`` the run goes to a worker (the scorer's queue) and the command
follows it with a progress bar until it finishes; ``--now`` scores in this process,
for a machine without a worker.
"""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotator import jobs, runs
from annotator.models import JobStatus, Project, Scorer, ScoringRun


class Command(BaseCommand):
    help = "Score a project's traces with a registered scorer."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--scorer", required=True, help="scorer name (see add_scorer)")
        parser.add_argument("--name", default="", help="run name (default: the scorer's)")
        parser.add_argument("--split")
        parser.add_argument("--generator")
        parser.add_argument("--source")
        parser.add_argument("--labelled", choices=("yes", "no"))
        parser.add_argument("--ids", help="trace ids, comma-separated")
        parser.add_argument("--now", action="store_true", help="score in this process")
        parser.add_argument(
            "--no-wait", action="store_true", help="queue the run and return at once"
        )

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project"])
            scorer = Scorer.objects.get(name=options["scorer"])
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug {options['project']!r}") from None
        except Scorer.DoesNotExist:
            raise CommandError(f"no scorer named {options['scorer']!r}") from None
        selection = {k: options[k] for k in jobs.SELECTION_KEYS if options.get(k)}
        try:
            run = runs.create_run(
                project,
                scorer,
                None,
                selection=selection,
                name=options["name"],
                # In this process: one job; on workers: shards as the deployment sets them.
                shard_traces=0 if options["now"] else None,
            )
        except jobs.RunError as exc:
            raise CommandError(str(exc)) from None
        quiet = options["verbosity"] == 0
        if options["now"]:
            self._run_here(run, quiet)
        else:
            try:
                jobs.enqueue(run)
            except jobs.EnqueueError as exc:
                raise CommandError(f"{exc} (or use --now)") from None
            self.stdout.write(f"Run {run.name} queued on {run.queue!r}.")
            if options["no_wait"]:
                return
            run = self._follow(run, quiet)
        if run.status != JobStatus.DONE:
            raise CommandError(f"run {run.name} {run.status}: {run.error}")
        self.stdout.write(self.style.SUCCESS(f"Run {run.name}: {run.summary}."))
        for row in runs.processbench_rows(run):
            r = row.result
            self.stdout.write(
                f"  {row.split:>12}  acc erroneous {r.acc_err:5.1f}  acc correct {r.acc_cor:5.1f}"
                f"  F1 {r.f1:5.1f}  (n={r.n_err}+{r.n_cor})"
            )

    def _run_here(self, run: ScoringRun, quiet: bool) -> None:
        bar = tqdm(unit=" traces", disable=quiet or None, file=sys.stderr)

        def show(done: int, total: int | None) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            jobs.execute(ScoringRun, run.pk, runs.run_scoring_job, observer=show)
        finally:
            bar.close()
        run.refresh_from_db()

    def _follow(self, run: ScoringRun, quiet: bool) -> ScoringRun:
        bar = tqdm(unit=" traces", disable=quiet or None, file=sys.stderr)
        try:
            while True:
                run.refresh_from_db()
                bar.total = run.progress_total
                bar.n = run.progress_done
                bar.set_postfix_str(run.get_status_display(), refresh=True)
                if run.is_finished:
                    return run
                time.sleep(1)
        finally:
            bar.close()
