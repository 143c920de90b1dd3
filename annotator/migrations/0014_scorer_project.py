"""Scorers trained in a project belong to it (site-wide scorers have no project).

The scorers that training runs registered before this change get their run's project,
so other projects stop seeing and using models trained on that project's labels."""

import django.db.models.deletion
from django.db import migrations, models


def scorers_of_training_runs(apps, schema_editor):
    Scorer = apps.get_model("annotator", "Scorer")
    TrainingRun = apps.get_model("annotator", "TrainingRun")
    for scorer_id, project_id in TrainingRun.objects.filter(scorer__isnull=False).values_list(
        "scorer_id", "project_id"
    ):
        Scorer.objects.filter(pk=scorer_id).update(project_id=project_id)


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0013_trace_project_id_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="scorer",
            name="project",
            field=models.ForeignKey(
                blank=True,
                help_text="The project whose training run made it; empty: site-wide.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="scorers",
                to="annotator.project",
            ),
        ),
        migrations.RunPython(scorers_of_training_runs, migrations.RunPython.noop),
    ]
