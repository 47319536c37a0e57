"""What the studio called an "engine" is a provider (local, DashScope, WaveSpeed...).

Renames only: no data changes. The index and constraint that name the field
are made again under the new name.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("studio", "0012_submit_posted_at")]

    operations = [
        migrations.RenameField("facecheck", "engine", "provider"),
        migrations.RenameField("generationjob", "engine", "provider"),
        migrations.RenameField("provideraccount", "engine", "provider"),
        migrations.RenameField("remotetask", "engine", "provider"),
        migrations.RenameField("reconciliation", "engine", "provider"),
        migrations.RemoveConstraint("facecheck", "one_check_per_image_engine"),
        migrations.AddConstraint(
            "facecheck",
            models.UniqueConstraint(
                fields=("sha256", "provider"), name="one_check_per_image_provider"
            ),
        ),
        migrations.RemoveIndex("generationjob", "job_queue"),
        migrations.AddIndex(
            "generationjob",
            models.Index(fields=["provider", "status", "queued_at"], name="job_queue"),
        ),
    ]
