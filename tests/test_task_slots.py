"""Tasks are what the queue counts and follows: a task holds its account's slot
from the claim on, every job in flight has a followed task, and tasks end with
their jobs. Crashes between two writes are driven through the sweep and the
tick, as in production, never by calling the poll directly."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from studio import lifecycle, services, tasks
from studio.models import GenerationJob, Task
from studio.queue import poll, recovery, slots, submit, tick, timing
from tests.test_lost_submits import (  # noqa: F401 (the inputs fixture is used by name)
    WorkerKilled,
    inputs,
    kill_after_saving_the_id,
    new_job,
)

pytestmark = pytest.mark.django_db


def holding() -> int:
    return Task.objects.filter(slots.holding_slot("dashscope")).count()


def recover(monkeypatch: pytest.MonkeyPatch, job: GenerationJob) -> list[int]:
    """One minute sweep, as if the crash was minutes ago, then the tick until the
    job ends, its polls run at once as workers would. Returns the polled ids."""
    polled: list[int] = []

    def hand_out(func: str, *args: Any, **kwargs: Any) -> None:
        if func == "studio.tasks.job_poll":
            polled.append(args[0])
            poll.job_poll(job_id=args[0])

    monkeypatch.setattr(tick, "async_task", hand_out)
    recovery.sweep_remote(now=timezone.now() + timedelta(minutes=3))
    deadline = time.monotonic() + 60
    while not GenerationJob.objects.get(pk=job.pk).is_terminal:
        assert time.monotonic() < deadline, "the job did not end"
        tick.tick()
        time.sleep(0.1)
    return polled


def test_a_claimed_job_holds_its_slot_before_anything_is_sent(
    emu,
    inputs,  # noqa: F811 (the fixture)
    alice,
    team,
):
    first, second = new_job(alice, team, inputs), new_job(alice, team, inputs)

    assert slots.dispatch(provider_name="dashscope") == [first.pk]
    first.refresh_from_db()
    assert first.task is not None and first.task.state == "pending"
    assert first.task.remote_id == ""  # not sent yet, and yet it holds the slot
    assert holding() == 1
    assert slots.dispatch(provider_name="dashscope") == []

    submit.job_submit(job_id=first.pk)
    first.refresh_from_db()
    assert first.task is not None and first.task.remote_id == first.remote_task_id
    assert first.task.next_poll_at is not None  # followed from the moment it is saved
    assert Task.objects.filter(job=first).count() == 1  # the claim's task took the id
    assert holding() == 1 and second.tasks.count() == 0


def test_a_crash_right_after_the_id_is_saved_leaves_the_task_followed(
    emu,
    inputs,  # noqa: F811 (the fixture)
    alice,
    team,
    monkeypatch,
):
    job = new_job(alice, team, inputs)
    kill_after_saving_the_id(monkeypatch)
    with pytest.raises(WorkerKilled):
        submit.dispatch_and_submit(provider_name="dashscope")
    job.refresh_from_db()
    assert job.task is not None and job.task.remote_id == job.remote_task_id
    assert job.task.next_poll_at is not None  # saved in the same transaction

    polled = recover(monkeypatch, job)

    job.refresh_from_db()
    assert job.pk in polled
    assert job.status == "succeeded" and holding() == 0


def test_a_job_whose_task_ended_before_the_job_moved_on_is_asked_again(
    emu,
    inputs,  # noqa: F811 (the fixture)
    alice,
    team,
    monkeypatch,
):
    # The poll recorded the task's end and stopped following it; the worker
    # died before the job was stored, queued again or failed.
    job = new_job(alice, team, inputs)
    submit.dispatch_and_submit(provider_name="dashscope")
    job.refresh_from_db()
    Task.objects.filter(pk=job.task_id).update(next_poll_at=None)
    GenerationJob.objects.filter(pk=job.pk).update(task=None)  # even the pointer lost

    polled = recover(monkeypatch, job)

    job.refresh_from_db()
    assert job.pk in polled and job.status == "succeeded"
    assert job.task is not None and job.task.remote_id == job.remote_task_id
    assert Task.objects.filter(job=job).count() == 1


def test_a_refused_submit_ends_its_task_on_record_and_the_next_waits_longer(
    emu,
    inputs,  # noqa: F811 (the fixture)
    alice,
    team,
    monkeypatch,
):
    # The backoff's jitter at its top, so that a wait that did not grow fails.
    monkeypatch.setattr(timing.random, "uniform", lambda low, high: high)
    emu.faults(kind="throttle", route="submit", count=2)
    job = new_job(alice, team, inputs)

    waits = []
    for _ in range(2):
        GenerationJob.objects.filter(pk=job.pk).update(not_before=None)
        before = timezone.now()
        submit.dispatch_and_submit(provider_name="dashscope")
        job.refresh_from_db()
        assert job.status == "queued" and job.attempts == 0
        waits.append((job.not_before - before).total_seconds())

    refused = Task.objects.filter(job=job).order_by("id")
    assert [(t.state, t.remote_id, t.error_code) for t in refused] == [
        ("failed", "", "Throttling.RateQuota")
    ] * 2
    # The backoff's ceiling doubles with each refusal: 2 s, then 4 s.
    assert waits[0] == pytest.approx(2.0, abs=0.5)
    assert waits[1] == pytest.approx(4.0, abs=0.5)
    assert holding() == 0


def test_tasks_end_with_their_jobs(
    emu,
    inputs,  # noqa: F811 (the fixture)
    alice,
    team,
    enqueued,
):
    # Canceled after the claim, before the send: its task never got an id.
    claimed = new_job(alice, team, inputs)
    slots.dispatch(provider_name="dashscope")
    claimed.refresh_from_db()
    services.job_cancel(job=claimed)
    assert Task.objects.get(job=claimed).state == "canceled"
    # Failed while sent (a lost submit marked for an admin): failed with it.
    sent = new_job(alice, team, inputs)
    slots.dispatch(provider_name="dashscope")
    lifecycle.fail(
        GenerationJob.objects.filter(pk=sent.pk), code="unverified_submit", message="?"
    )
    assert Task.objects.get(job=sent).state == "failed"
    assert not Task.objects.filter(next_poll_at__isnull=False).exists()
    assert holding() == 0


def test_a_local_render_is_a_task_too(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    job = services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )
    assert job.provider == "local"

    tasks.job_run(job.pk)

    job.refresh_from_db()
    task = Task.objects.get(job=job)
    assert job.task_id == task.pk and job.status == "succeeded"
    assert (task.provider, task.state, task.remote_id) == ("local", "succeeded", "")
    assert (task.billed_seconds, task.cost) == (job.billed_seconds, job.cost)
    assert task.started_at is not None and task.ended_at is not None
