from django.db import migrations, models
from django.db.models import F


def assume_sent(apps, schema_editor):
    """A submit in flight during the upgrade may have gone out: treat it as sent,
    so the sweep looks for its task instead of sending the job again."""
    job = apps.get_model("studio", "GenerationJob")
    job.objects.filter(status="submitted", remote_task_id="").exclude(
        submit_started_at=None
    ).update(submit_posted_at=F("submit_started_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("studio", "0011_lost_submit_recovery"),
    ]

    operations = [
        migrations.AddField(
            model_name="generationjob",
            name="submit_posted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(assume_sent, migrations.RunPython.noop),
    ]
