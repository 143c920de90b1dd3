"""``python manage.py sweep_jobs``: take up the jobs of dead workers now.

Every worker does this by itself every half stale period; the command is for a
deployment that turns that off (``STEPWISE_JOB_SWEEP_IN_WORKER=false``) and runs it
from cron, or for an operator who wants to see the counts.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from annotator.jobs import sweep


class Command(BaseCommand):
    help = "Requeue jobs whose worker died (stale heartbeat); fail those out of attempts."

    def handle(self, *args, **options):
        counts = sweep()
        self.stdout.write(", ".join(f"{n} {what}" for what, n in counts.items()))
