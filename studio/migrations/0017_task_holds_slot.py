"""The queue counts slots and plans polls by task, not by job.

A job points at the task of its current attempt. When to ask next and how
often the studio asked move from the job to that task. Every job in flight
gets a current task if it has none (a local render, or a submit between
migrations), so no slot goes uncounted; an ended job points at the task its
remote id names, when there is one.

Reversible: backwards, the current task's poll plan goes back on the job.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

IN_FLIGHT = ("submitted", "running")
ACTIVE_BY_JOB_STATUS = {"submitted": "pending", "running": "running"}


def _current(Task, job):
    """The row of the job's task id; for a job still without one, an open row."""
    rows = Task.objects.filter(job=job, remote_id=job.remote_task_id)
    if not job.remote_task_id:
        rows = rows.filter(state__in=ACTIVE_BY_JOB_STATUS.values())
    return rows.order_by("-id").first()


def polls_to_tasks(apps, schema_editor):
    Job = apps.get_model("studio", "GenerationJob")
    Task = apps.get_model("studio", "Task")
    # Ended jobs: one UPDATE, pointing each at the task its remote id names.
    Job.objects.exclude(status__in=IN_FLIGHT).exclude(remote_task_id="").update(
        task=Subquery(
            Task.objects.filter(
                job=OuterRef("pk"), remote_id=OuterRef("remote_task_id")
            )
            .order_by("-id")
            .values("pk")[:1]
        )
    )
    for job in Job.objects.filter(status__in=IN_FLIGHT).iterator():
        task = _current(Task, job)
        if task is None:
            task = Task.objects.create(
                job=job,
                provider=job.provider,
                account="",  # remember_task adds the fingerprint when it sees the id
                remote_id=job.remote_task_id,
                state=ACTIVE_BY_JOB_STATUS[job.status],
                remote_status=job.remote_status,
                submitted_at=job.submit_started_at or job.started_at or job.queued_at,
                submit_started_at=job.submit_started_at,
                submit_posted_at=job.submit_posted_at,
                started_at=job.remote_started_at,
            )
        task.next_poll_at = job.next_poll_at
        task.polls = job.polls
        task.save(update_fields=["next_poll_at", "polls"])
        Job.objects.filter(pk=job.pk).update(task=task)


def polls_to_jobs(apps, schema_editor):
    Job = apps.get_model("studio", "GenerationJob")
    Task = apps.get_model("studio", "Task")
    for job in Job.objects.filter(status__in=IN_FLIGHT).iterator():
        task = _current(Task, job)
        if task is not None:
            job.next_poll_at = task.next_poll_at
            job.polls = task.polls
            job.save(update_fields=["next_poll_at", "polls"])


class Migration(migrations.Migration):
    dependencies = [("studio", "0016_wavespeed_emulator_prices")]

    operations = [
        migrations.AlterField(
            model_name="task",
            name="next_poll_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["provider", "state"], name="task_slots"),
        ),
        migrations.AddField(
            model_name="generationjob",
            name="task",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="studio.task",
            ),
        ),
        migrations.RunPython(polls_to_tasks, polls_to_jobs),
        migrations.RemoveField(model_name="generationjob", name="next_poll_at"),
        migrations.RemoveField(model_name="generationjob", name="polls"),
    ]
