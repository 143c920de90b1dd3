"""Imports write traces and problems without per-row foreign-key checks (issue 24):
the importer checks its keys itself, once per chunk (annotator/models.py, Trace)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0019_sampling_verification"),
    ]

    operations = [
        migrations.AlterField(
            model_name="problem",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="problems",
                to="annotator.project",
            ),
        ),
        migrations.AlterField(
            model_name="trace",
            name="problem",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="traces",
                to="annotator.problem",
            ),
        ),
        migrations.AlterField(
            model_name="trace",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="traces",
                to="annotator.project",
            ),
        ),
    ]
