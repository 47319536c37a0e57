"""0015_tasks on a database with jobs in every state: one task per job that went
to a provider, with the job's facts, and back again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("studio", "0014_job_model_params")]
AFTER = [("studio", "0015_tasks")]

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0013() -> Iterator[Any]:
    apps = migrate(BEFORE)
    yield apps
    # Leave the database as every other test expects it.
    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())


def make_jobs(apps: Any) -> dict[str, Any]:
    Team = apps.get_model("studio", "Team")
    User = apps.get_model("studio", "User")
    Portrait = apps.get_model("studio", "Portrait")
    AudioClip = apps.get_model("studio", "AudioClip")
    Job = apps.get_model("studio", "GenerationJob")
    RemoteTask = apps.get_model("studio", "RemoteTask")
    LedgerEntry = apps.get_model("studio", "LedgerEntry")

    user = User.objects.create(username="old")
    team = Team.objects.create(name="Old", slug="old")
    portrait = Portrait.objects.create(
        team=team, uploaded_by=user, file="p.png", sha256="p" * 64, size=1,
        width=500, height=500, format="PNG",
    )  # fmt: skip
    audio = AudioClip.objects.create(
        team=team, uploaded_by=user, file="a.wav", original_format="wav",
        format="wav", sha256="a" * 64, duration=2.0, size=1, sample_rate=16000,
        channels=1,
    )  # fmt: skip
    now = timezone.now().replace(microsecond=0)
    t = [now - timedelta(minutes=30 - i) for i in range(30)]

    def job(**fields: Any) -> Any:
        return Job.objects.create(
            team=team, created_by=user, portrait=portrait, audio=audio,
            provider=fields.pop("provider", "dashscope"), **fields,
        )  # fmt: skip

    jobs = {
        "queued": job(status="queued"),
        "local": job(
            provider="local", status="succeeded", started_at=t[0], finished_at=t[1],
            billed_seconds=Decimal("2.00"), cost=Decimal("0"), currency="USD",
        ),
        "submitting": job(
            status="submitted", attempts=1, started_at=t[2], submit_started_at=t[2],
        ),
        "submitted": job(
            status="submitted", attempts=1, started_at=t[3], submit_started_at=t[3],
            submit_posted_at=t[4], remote_task_id="task-submitted",
            remote_status="PENDING", remote_started_at=t[4], next_poll_at=t[9],
            polls=1,
        ),
        "running": job(
            status="running", attempts=1, started_at=t[5], submit_started_at=t[5],
            submit_posted_at=t[5], remote_task_id="task-running",
            remote_status="RUNNING", remote_started_at=t[6],
            provider_scheduled_at=t[6], next_poll_at=t[12], polls=3,
        ),
        "succeeded": job(
            status="succeeded", attempts=1, started_at=t[7], submit_started_at=t[7],
            submit_posted_at=t[7], remote_task_id="task-succeeded",
            remote_status="SUCCEEDED", remote_started_at=t[8],
            provider_scheduled_at=t[8], provider_ended_at=t[10], finished_at=t[11],
            polls=4, billed_seconds=Decimal("2.50"), cost=Decimal("0.250000"),
            currency="USD", result_url="https://example.com/v.mp4",
            remote_seconds=120.0,
        ),
        "failed": job(
            status="failed", attempts=1, started_at=t[13], submit_started_at=t[13],
            submit_posted_at=t[13], remote_task_id="task-failed",
            remote_status="FAILED", finished_at=t[15], polls=2,
            error_code="DataInspectionFailed", error_message="Refused.",
        ),
        "canceled": job(
            status="canceled", attempts=1, started_at=t[16], submit_started_at=t[16],
            submit_posted_at=t[16], remote_task_id="task-canceled",
            remote_status="CANCELED", finished_at=t[17],
        ),
        "lost": job(
            status="failed", attempts=1, started_at=t[18], submit_started_at=t[18],
            submit_posted_at=t[19], recovery="admin", recovery_at=t[25],
            finished_at=t[26], error_code="unverified_submit",
            error_message="The provider may have made this video.",
        ),
        "checking": job(
            status="submitted", attempts=1, started_at=t[20], submit_started_at=t[20],
            submit_posted_at=t[20], recovery="checking", recovery_at=t[23],
        ),
    }  # fmt: skip
    # remember_task's records: the submitted job's, and two of the retried
    # succeeded job (an earlier FAILED task, and its current one).
    for key, task_id, status in (
        ("submitted", "task-submitted", "PENDING"),
        ("succeeded", "task-first-try", "FAILED"),
        ("succeeded", "task-succeeded", "SUCCEEDED"),
    ):
        RemoteTask.objects.create(
            job=jobs[key], provider="dashscope", account="acct", task_id=task_id,
            model="wan2.2-s2v", status=status, submitted_at=t[1],
        )  # fmt: skip
    RemoteTask.objects.create(  # another application's, found by reconciliation
        provider="dashscope", account="acct", task_id="task-outside", status="RUNNING"
    )
    LedgerEntry.objects.create(
        team=team, user=user, job=jobs["succeeded"], kind="generation",
        provider="dashscope", model="wan2.2-s2v", resolution="480P", unit="second",
        quantity=Decimal("2.5"), unit_price=Decimal("0.1"), amount=Decimal("0.25"),
        currency="USD", seconds=Decimal("2.5"), billed=True,
        remote_id="task-succeeded",
    )  # fmt: skip
    return jobs


def test_every_job_that_went_to_a_provider_gets_its_task(at_0013):
    jobs = {key: job.pk for key, job in make_jobs(at_0013).items()}

    apps = migrate(AFTER)
    Task = apps.get_model("studio", "Task")
    Job = apps.get_model("studio", "GenerationJob")

    def only(key: str) -> Any:
        tasks = list(Task.objects.filter(job_id=jobs[key]))
        assert len(tasks) == 1, (key, tasks)
        return tasks[0]

    # Never sent, or made here: no task.
    assert not Task.objects.filter(job_id__in=[jobs["queued"], jobs["local"]]).exists()

    submitting = only("submitting")
    assert (submitting.remote_id, submitting.state, submitting.remote_status) == (
        "",
        "pending",
        "",
    )
    job = Job.objects.get(pk=jobs["submitting"])
    assert submitting.submit_started_at == job.submit_started_at
    assert submitting.submit_posted_at is None

    submitted = only("submitted")
    job = Job.objects.get(pk=jobs["submitted"])
    assert (submitted.remote_id, submitted.account) == ("task-submitted", "acct")
    assert (submitted.state, submitted.remote_status) == ("pending", "PENDING")
    assert submitted.submit_posted_at == job.submit_posted_at
    assert submitted.started_at == job.remote_started_at
    assert (submitted.next_poll_at, submitted.polls) == (job.next_poll_at, 1)

    running = only("running")
    job = Job.objects.get(pk=jobs["running"])
    assert (running.state, running.remote_status, running.polls) == (
        "running",
        "RUNNING",
        3,
    )
    assert running.provider_scheduled_at == job.provider_scheduled_at
    assert running.ended_at is None and running.account == ""

    job = Job.objects.get(pk=jobs["succeeded"])
    tasks = {t.remote_id: t for t in Task.objects.filter(job_id=job.pk)}
    assert set(tasks) == {"task-first-try", "task-succeeded"}
    assert tasks["task-first-try"].state == "failed"
    done = tasks["task-succeeded"]
    assert (done.state, done.billed_seconds, done.cost, done.currency) == (
        "succeeded",
        Decimal("2.50"),
        Decimal("0.250000"),
        "USD",
    )
    assert (done.provider_ended_at, done.ended_at) == (job.provider_ended_at,) * 2
    assert done.result_url == job.result_url and done.model == "wan2.2-s2v"
    LedgerEntry = apps.get_model("studio", "LedgerEntry")
    assert LedgerEntry.objects.get(job_id=job.pk).task_id == done.pk

    failed = only("failed")
    assert (failed.state, failed.error_code, failed.error_message) == (
        "failed",
        "DataInspectionFailed",
        "Refused.",
    )
    assert failed.ended_at == Job.objects.get(pk=jobs["failed"]).finished_at
    assert only("canceled").state == "canceled"

    lost = only("lost")
    assert (lost.remote_id, lost.state, lost.error_code) == (
        "",
        "failed",
        "unverified_submit",
    )
    checking = only("checking")
    assert (checking.remote_id, checking.state, checking.next_poll_at) == (
        "",
        "pending",
        None,
    )
    outside = Task.objects.get(remote_id="task-outside")
    assert (outside.job_id, outside.state) == (None, "running")


def test_the_migration_goes_back(at_0013):
    jobs = make_jobs(at_0013)
    migrate(AFTER)

    apps = migrate(BEFORE)
    RemoteTask = apps.get_model("studio", "RemoteTask")
    # The rows that had a task id are kept; the ones the old table had no room
    # for (no id) are gone.
    assert not RemoteTask.objects.filter(task_id="").exists()
    assert set(RemoteTask.objects.values_list("task_id", flat=True)) == {
        "task-submitted",
        "task-first-try",
        "task-succeeded",
        "task-outside",
        "task-running",
        "task-failed",
        "task-canceled",
    }
    assert RemoteTask.objects.get(task_id="task-running").job_id == jobs["running"].pk


def test_jobs_in_flight_get_a_current_task_holding_their_poll_plan(at_0013):
    keys = {key: job.pk for key, job in make_jobs(at_0013).items()}
    apps = migrate([("studio", "0016_wavespeed_emulator_prices")])
    Job = apps.get_model("studio", "GenerationJob")
    old = Job.objects.get(pk=keys["local"])
    rendering = Job.objects.create(  # a local render in flight: no task yet
        team_id=old.team_id, created_by_id=old.created_by_id,
        portrait_id=old.portrait_id, audio_id=old.audio_id, provider="local",
        status="running", attempts=1, started_at=old.started_at, polls=0,
    )  # fmt: skip
    plans = {
        key: (job.next_poll_at, job.polls)
        for key, job in ((k, Job.objects.get(pk=pk)) for k, pk in keys.items())
    }

    apps = migrate([("studio", "0017_task_holds_slot")])
    Job = apps.get_model("studio", "GenerationJob")
    Task = apps.get_model("studio", "Task")

    for key in ("submitting", "submitted", "running", "checking"):
        job = Job.objects.get(pk=keys[key])
        task = Task.objects.get(pk=job.task_id)
        assert (task.job_id, task.remote_id) == (job.pk, job.remote_task_id), key
        assert (task.next_poll_at, task.polls) == plans[key], key
    local = Task.objects.get(pk=Job.objects.get(pk=rendering.pk).task_id)
    assert (local.provider, local.state, local.remote_id) == ("local", "running", "")
    # An ended job points at the task its remote id names; one with none, at none.
    done = Job.objects.get(pk=keys["succeeded"])
    assert Task.objects.get(pk=done.task_id).remote_id == "task-succeeded"
    assert Job.objects.get(pk=keys["queued"]).task_id is None

    apps = migrate([("studio", "0016_wavespeed_emulator_prices")])
    Job = apps.get_model("studio", "GenerationJob")
    for key in ("submitted", "running"):
        job = Job.objects.get(pk=keys[key])
        assert (job.next_poll_at, job.polls) == plans[key], key
