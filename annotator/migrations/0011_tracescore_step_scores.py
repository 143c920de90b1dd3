from django.db import migrations

import annotator.models


def fill_step_scores(apps, schema_editor) -> None:
    """Runs stored before the column get it from their StepScore rows (one statement,
    about 1 s per million steps), so their dashboards are as fast as new runs'. The
    dashboard reads the steps of any row left null, so this is a speed-up, not a fix;
    the SQLite demo has no dashboard and is skipped."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        """UPDATE annotator_tracescore ts
              SET step_scores = (SELECT array_agg(s.score ORDER BY s.step_index)
                                   FROM annotator_stepscore s
                                  WHERE s.run_id = ts.run_id AND s.trace_id = ts.trace_id)
            WHERE ts.step_scores IS NULL"""
    )


class Migration(migrations.Migration):
    dependencies = [
        ("annotator", "0010_fewer_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="tracescore",
            name="step_scores",
            field=annotator.models.RealArrayField(null=True),
        ),
        migrations.RunPython(fill_step_scores, migrations.RunPython.noop, elidable=True),
    ]
