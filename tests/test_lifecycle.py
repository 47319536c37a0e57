"""The lifecycle: every ending of a job, local or remote, settles, announces and
signals once, however often the code that ends it runs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from studio import lifecycle, services, tasks
from studio.models import GenerationJob, LedgerEntry, Notification, Task
from studio.queue import poll
from tests.test_dashscope_flow import (  # noqa: F401 (the inputs fixture is used by name)
    drive,
    inputs,
    queue,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def endings() -> Iterator[list[tuple[int, str]]]:
    seen: list[tuple[int, str]] = []

    def listener(sender: Any, *, job: GenerationJob, outcome: str, **_: Any) -> None:
        assert sender is GenerationJob
        seen.append((job.pk, outcome))

    lifecycle.job_finished.connect(listener)
    yield seen
    lifecycle.job_finished.disconnect(listener)


@pytest.fixture
def queued(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    return services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )


def money(job: GenerationJob) -> list[str]:
    return sorted(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))


def test_a_local_render_ends_once_succeeded_and_charged(queued, endings):
    tasks.job_run(queued.pk)
    tasks.job_run(queued.pk)  # a redelivered message

    queued.refresh_from_db()
    assert queued.status == "succeeded" and queued.video
    assert endings == [(queued.pk, "succeeded")]
    assert money(queued) == ["generation", "hold", "release"]
    assert Notification.objects.filter(job=queued).count() == 1


def test_a_failure_ends_the_job_once_however_often_it_is_reported(queued, endings):
    GenerationJob.objects.filter(pk=queued.pk).update(status="running")
    mine = GenerationJob.objects.filter(pk=queued.pk)

    first = lifecycle.fail(mine, code="DataInspectionFailed", message="Refused.")
    again = lifecycle.fail(mine, code="other", message="Later word.")

    queued.refresh_from_db()
    assert (first, again) == ([queued.pk], [])
    assert (queued.status, queued.error_code) == ("failed", "DataInspectionFailed")
    assert endings == [(queued.pk, "failed")]
    assert money(queued) == ["generation", "hold", "release"]
    entry = LedgerEntry.objects.get(job=queued, kind="generation")
    assert not entry.billed and entry.amount == 0


def test_a_queued_job_is_canceled_once_and_its_hold_released(queued, endings):
    services.job_cancel(job=queued)
    assert lifecycle.cancel(GenerationJob.objects.filter(pk=queued.pk)) == []

    queued.refresh_from_db()
    assert queued.status == "canceled"
    assert endings == [(queued.pk, "canceled")]
    assert money(queued) == ["generation", "hold", "release"]
    assert not Notification.objects.filter(job=queued).exists()


def test_an_ended_job_is_never_ended_again(queued, endings):
    services.job_cancel(job=queued)
    everyone = GenerationJob.objects.filter(pk=queued.pk)

    assert lifecycle.fail(everyone, code="late", message="Too late.") == []
    assert lifecycle.cancel(everyone) == []

    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == ("canceled", "")
    assert endings == [(queued.pk, "canceled")]


def test_a_failing_listener_does_not_undo_the_ending(queued, endings):
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("listener bug")

    lifecycle.job_finished.connect(broken)
    try:
        GenerationJob.objects.filter(pk=queued.pk).update(status="submitted")
        ended = lifecycle.fail(
            GenerationJob.objects.filter(pk=queued.pk), code="x", message="y"
        )
    finally:
        lifecycle.job_finished.disconnect(broken)

    queued.refresh_from_db()
    assert ended == [queued.pk] and queued.status == "failed"
    assert endings == [(queued.pk, "failed")]
    assert money(queued) == ["generation", "hold", "release"]


def test_a_remote_task_ends_its_job_once_charged_what_the_provider_billed(
    alice,
    team,
    inputs,  # noqa: F811 (the fixture)
    enqueued,
    endings,
):
    job = drive(queue(alice, team, inputs, enqueued))
    poll.job_poll(job_id=job.pk)  # a late poll of an ended job

    assert job.status == "succeeded" and job.video
    assert endings == [(job.pk, "succeeded")]
    charge = LedgerEntry.objects.get(job=job, kind="generation")
    assert charge.billed and charge.remote_id == job.remote_task_id
    assert charge.seconds == job.billed_seconds and charge.amount == job.cost
    # The task row holds what the provider did and what it cost; the line names it.
    task = Task.objects.get(job=job)
    assert charge.task == task and task.remote_id == job.remote_task_id
    assert (task.state, task.remote_status) == ("succeeded", job.remote_status)
    assert (task.billed_seconds, task.cost) == (job.billed_seconds, job.cost)
    assert task.submit_posted_at is not None and task.ended_at is not None
    assert task.result_url == job.result_url


def test_a_failed_job_whose_task_was_billed_charges_that_task(
    alice,
    team,
    inputs,  # noqa: F811 (the fixture)
    enqueued,
    endings,
):
    job = queue(alice, team, inputs, enqueued)
    assert job.provider == "dashscope"
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running",
        remote_task_id="t-billed",
        remote_status="SUCCEEDED",
        billed_seconds=Decimal("2.00"),
    )
    task = Task.objects.create(
        job=job,
        provider=job.provider,
        account="acct",
        remote_id="t-billed",
        state=Task.State.SUCCEEDED,
        remote_status="SUCCEEDED",
        billed_seconds=Decimal("2.00"),
    )

    lifecycle.fail(
        GenerationJob.objects.filter(pk=job.pk),
        code="result_lost",
        message="The link expired.",
    )

    job.refresh_from_db()
    charge = LedgerEntry.objects.get(job=job, kind="generation")
    task.refresh_from_db()
    assert job.paid_for_nothing and charge.billed and charge.amount > 0
    assert charge.task == task and charge.remote_id == "t-billed"
    assert task.cost == charge.amount == job.cost
    assert endings == [(job.pk, "failed")]
