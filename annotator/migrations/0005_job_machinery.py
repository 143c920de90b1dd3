"""Import jobs on the shared ``Job`` base: heartbeats, attempts, cancel, queue, and
uploads named in Django's storage instead of by a local path."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def stop_unfinished_jobs(apps, schema_editor):
    """Jobs queued or running under the old scheme name a local path no worker of the
    new scheme reads, and their messages are gone: fail them with a clear message."""
    ImportJob = apps.get_model("annotator", "ImportJob")
    ImportJob.objects.filter(status__in=["queued", "running"]).update(
        status="failed", error="Stopped by an upgrade of Stepwise; upload the file again."
    )
    ImportJob.objects.update(upload="")


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0004_project_setting_ranges"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField("importjob", "path", "upload"),
        migrations.AlterField(
            model_name="importjob",
            name="upload",
            field=models.CharField(help_text="Storage name of the uploaded file.", max_length=500),
        ),
        migrations.RenameField("importjob", "records_done", "progress_done"),
        migrations.AlterField(
            model_name="importjob",
            name="progress_done",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="importjob",
            name="progress_total",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Waiting for a worker"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="created_by",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="importjob",
            name="queue",
            field=models.CharField(default="default", max_length=64),
        ),
        migrations.AddField(
            model_name="importjob",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="importjob",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="importjob",
            name="max_attempts",
            field=models.PositiveSmallIntegerField(default=3),
        ),
        migrations.AddField(
            model_name="importjob",
            name="worker",
            field=models.CharField(
                blank=True, help_text="The worker that ran it last.", max_length=200
            ),
        ),
        migrations.AddField(
            model_name="importjob",
            name="cancel_requested",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="importjob",
            name="error_detail",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="importjob",
            name="queued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="importjob",
            index=models.Index(fields=["status", "heartbeat_at"], name="importjob_status"),
        ),
        migrations.RunPython(stop_unfinished_jobs, migrations.RunPython.noop),
    ]
