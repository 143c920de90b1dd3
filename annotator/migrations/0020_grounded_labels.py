"""Grounded runs' paths as traces (GroundedPath), the grounded label set source and the
"tool and rollouts disagree" queue order."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0019_sampling_verification"),
    ]

    operations = [
        migrations.AlterField(
            model_name="labelset",
            name="source",
            field=models.CharField(
                choices=[
                    ("human", "Human labels (agreed or adjudicated)"),
                    ("mc-hard", "Monte-Carlo hard labels"),
                    ("mc-soft", "Monte-Carlo soft labels at a threshold"),
                    ("scoring", "A scoring run at a threshold"),
                    ("consensus", "Consensus of two label sets"),
                    ("grounded", "A grounded run's step labels"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="project",
            name="queue_order",
            field=models.CharField(
                choices=[
                    ("import", "Import order"),
                    ("random", "Random (seeded)"),
                    ("convincing_wrong", "Convincing wrong answers first (queue run)"),
                    ("runs_disagree", "Where the project's runs disagree most first"),
                    ("run_vs_humans", "Where the queue run disagrees with the labels first"),
                    ("tool_vs_rollouts", "Where the tool and the rollouts disagree first"),
                ],
                db_default="import",
                default="import",
                max_length=20,
            ),
        ),
        migrations.CreateModel(
            name="GroundedPath",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("nodes", models.JSONField(default=list)),
                ("values", models.JSONField(default=list)),
                ("scores", models.JSONField(default=list)),
                ("decisions", models.JSONField(default=list)),
                ("verdicts", models.JSONField(default=list)),
                ("judgements", models.JSONField(default=list)),
                ("fused", models.JSONField(default=list)),
                ("label", models.CharField(max_length=10)),
                ("consistent", models.BooleanField()),
                ("disagreeing", models.JSONField(default=list)),
                ("disagreements", models.PositiveIntegerField(default=0)),
                (
                    "run",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="paths",
                        to="annotator.groundedrun",
                    ),
                ),
                (
                    "trace",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="grounded_path",
                        to="annotator.trace",
                    ),
                ),
                (
                    "tree",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="annotator.groundedtree",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["run", "consistent"], name="groundedpath_run")],
            },
        ),
    ]
