"""A job's remote work becomes task rows: RemoteTask grows into Task.

RemoteTask already held every task a job ever had (provider, account, id,
the provider's word, billed seconds), so it is renamed and grown rather than
copied: its rows and the reconciliation's knowledge stay as they are. The
task gains a normalized state, the timings, polls, cost, error and result
that were per job.

Data: each job that is or was at a provider (in flight, or ended after a
submit began) gets its current task filled from the job's fields: the row
remember_task made for its task id when there is one, else a new row (with
an empty remote id when the submit never brought one back). Queued jobs have
no current task (an earlier, retried task keeps its own row). Generation
ledger lines are linked to the task whose id they name.

Reversible: backwards, the rows without a remote id are deleted (the old
table had no room for them); the other rows keep what they can.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Q

# DashScope's task words (provider-api.md §1.6) as they were when this
# migration was written: the only remote provider then. Frozen here because
# a migration must not change with the provider package.
WORDS = {
    "PENDING": "pending",
    "SUSPENDED": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "CANCELED": "canceled",
    "UNKNOWN": "expired",
}
# A job's status, for a task the provider never named a state for.
BY_JOB_STATUS = {
    "submitted": "pending",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
MODELS = {"dashscope": "wan2.2-s2v", "emulator": "wan2.2-s2v"}
ENDED = ("succeeded", "failed", "canceled")


def _state(word, job_status):
    return WORDS.get(word) or BY_JOB_STATUS.get(job_status, "pending")


def jobs_to_tasks(apps, schema_editor):
    Job = apps.get_model("studio", "GenerationJob")
    Task = apps.get_model("studio", "Task")
    LedgerEntry = apps.get_model("studio", "LedgerEntry")

    for task in Task.objects.exclude(remote_status=""):
        task.state = WORDS.get(task.remote_status, "failed")
        task.save(update_fields=["state"])

    had_remote_work = (
        ~Q(remote_task_id="")
        | ~Q(remote_status="")
        | Q(submit_started_at__isnull=False)
        | ~Q(recovery="")
    )
    jobs = Job.objects.filter(had_remote_work).exclude(status="queued")
    for job in jobs.order_by("id").iterator():
        ended = job.status in ENDED
        fields = {
            "job": job,
            "index": 0,
            "provider": job.provider,
            "remote_status": job.remote_status,
            "state": _state(job.remote_status, job.status),
            "submit_started_at": job.submit_started_at,
            "submit_posted_at": job.submit_posted_at,
            "started_at": job.remote_started_at,
            "ended_at": job.provider_ended_at or (job.finished_at if ended else None),
            "provider_scheduled_at": job.provider_scheduled_at,
            "provider_ended_at": job.provider_ended_at,
            "next_poll_at": None if ended else job.next_poll_at,
            "polls": job.polls,
            "cost": job.cost,
            "currency": job.currency if job.cost is not None else "",
            "error_code": job.error_code if job.status == "failed" else "",
            "error_message": job.error_message if job.status == "failed" else "",
            "result_url": job.result_url,
        }
        if job.billed_seconds is not None:
            fields["billed_seconds"] = job.billed_seconds
        task = None
        if job.remote_task_id:
            task = (
                Task.objects.filter(remote_id=job.remote_task_id)
                .filter(Q(job=job) | Q(job__isnull=True))
                .order_by("id")
                .first()
            )
        if task is not None:
            for name, value in fields.items():
                setattr(task, name, value)
            task.save()
            continue
        Task.objects.create(
            remote_id=job.remote_task_id,
            account="",
            model=MODELS.get(job.provider, job.provider),
            submitted_at=job.submit_posted_at
            or job.submit_started_at
            or job.started_at
            or job.queued_at,
            **fields,
        )

    lines = LedgerEntry.objects.filter(
        kind="generation", job__isnull=False, task__isnull=True
    ).exclude(remote_id="")
    for line in lines.iterator():
        task = (
            Task.objects.filter(job_id=line.job_id, remote_id=line.remote_id)
            .order_by("id")
            .first()
        )
        if task is not None:
            # A reference added to the line, not a change of its money.
            LedgerEntry.objects.filter(pk=line.pk).update(task=task)


def tasks_to_remote_tasks(apps, schema_editor):
    Task = apps.get_model("studio", "Task")
    LedgerEntry = apps.get_model("studio", "LedgerEntry")
    LedgerEntry.objects.filter(task__remote_id="").update(task=None)
    Task.objects.filter(remote_id="").delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0014_job_model_params")]

    operations = [
        migrations.RemoveConstraint("remotetask", "one_record_per_remote_task"),
        migrations.RenameModel("RemoteTask", "Task"),
        migrations.RenameField("task", "task_id", "remote_id"),
        migrations.RenameField("task", "status", "remote_status"),
        migrations.AlterField(
            model_name="task",
            name="remote_id",
            field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AlterField(
            model_name="task",
            name="job",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="tasks",
                to="studio.generationjob",
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="index",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="task",
            name="state",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("canceled", "Canceled"),
                    ("expired", "Expired"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="submit_started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="submit_posted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="ended_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="provider_scheduled_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="provider_ended_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="next_poll_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="task",
            name="polls",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="task",
            name="cost",
            field=models.DecimalField(
                blank=True, decimal_places=6, max_digits=12, null=True
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="currency",
            field=models.CharField(blank=True, max_length=3),
        ),
        migrations.AddField(
            model_name="task",
            name="error_code",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="task",
            name="error_message",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="task",
            name="result_url",
            field=models.URLField(blank=True, max_length=2000),
        ),
        migrations.AddConstraint(
            model_name="task",
            constraint=models.UniqueConstraint(
                condition=~Q(remote_id=""),
                fields=("account", "remote_id"),
                name="one_record_per_remote_task",
            ),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="task",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="ledger",
                to="studio.task",
            ),
        ),
        migrations.RunPython(jobs_to_tasks, tasks_to_remote_tasks),
    ]
