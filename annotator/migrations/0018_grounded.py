"""Grounded runs (GroundedPRM tree search per problem) and their per-problem trees."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0016_shards"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="GroundedRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("queue", models.CharField(default="default", max_length=64)),
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
                ("progress_done", models.PositiveBigIntegerField(default=0)),
                ("progress_total", models.PositiveBigIntegerField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("max_attempts", models.PositiveSmallIntegerField(default=3)),
                (
                    "worker",
                    models.CharField(
                        blank=True, help_text="The worker that ran it last.", max_length=200
                    ),
                ),
                ("cancel_requested", models.BooleanField(default=False)),
                ("error", models.TextField(blank=True)),
                ("error_detail", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("summary", models.JSONField(blank=True, default=dict)),
                ("name", models.SlugField(max_length=100)),
                ("generator", models.CharField(max_length=500)),
                (
                    "model",
                    models.CharField(
                        blank=True, help_text="The served generator's name.", max_length=500
                    ),
                ),
                ("judge", models.CharField(default="tool", max_length=500)),
                ("judge_model", models.CharField(blank=True, max_length=500)),
                (
                    "search_selection",
                    models.CharField(
                        choices=[
                            ("uct", "UCT (getBestChild, c = 1.8)"),
                            ("released", "The released select(): a random child of the root"),
                        ],
                        default="uct",
                        max_length=20,
                    ),
                ),
                ("seed", models.PositiveBigIntegerField(default=0)),
                ("options", models.JSONField(blank=True, default=dict)),
                ("judge_options", models.JSONField(blank=True, default=dict)),
                ("selection", models.JSONField(blank=True, default=dict)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="grounded_runs",
                        to="annotator.project",
                    ),
                ),
            ],
            options={
                "ordering": ["-id"],
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="GroundedTree",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("state", models.JSONField()),
                ("rounds", models.PositiveIntegerField(default=0)),
                ("nodes", models.PositiveIntegerField(default=0)),
                ("done", models.BooleanField(default=False)),
                (
                    "problem",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="annotator.problem",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="trees",
                        to="annotator.groundedrun",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="groundedrun",
            index=models.Index(fields=["status", "heartbeat_at"], name="groundedrun_status"),
        ),
        migrations.AddConstraint(
            model_name="groundedrun",
            constraint=models.UniqueConstraint(
                fields=("project", "name"), name="groundedrun_unique_name"
            ),
        ),
        migrations.AddConstraint(
            model_name="groundedtree",
            constraint=models.UniqueConstraint(
                fields=("run", "problem"), name="groundedtree_unique"
            ),
        ),
    ]
