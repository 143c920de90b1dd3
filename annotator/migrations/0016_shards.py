"""Runs split into shards that several workers take (``annotator/shards.py``)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0015_score_import_job"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.CreateModel(
            name="Shard",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("run_id", models.BigIntegerField()),
                ("index", models.PositiveIntegerField()),
                ("first_trace_id", models.BigIntegerField()),
                ("last_trace_id", models.BigIntegerField()),
                ("traces", models.PositiveIntegerField()),
                (
                    "status",
                    models.CharField(
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
                ("done", models.PositiveIntegerField(default=0)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                (
                    "worker",
                    models.CharField(
                        blank=True, help_text="The worker that took it last.", max_length=200
                    ),
                ),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "content_type",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="contenttypes.contenttype",
                    ),
                ),
            ],
            options={
                "ordering": ["index"],
                "indexes": [
                    models.Index(fields=["status", "heartbeat_at"], name="shard_status"),
                    models.Index(
                        condition=models.Q(("status__in", ["queued", "running"])),
                        fields=["content_type", "run_id", "index"],
                        name="shard_claimable",
                    ),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("content_type", "run_id", "index"), name="shard_unique_index"
                    )
                ],
            },
        ),
    ]
