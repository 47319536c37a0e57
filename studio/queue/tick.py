"""The dispatcher process's tick: fill free slots and hand due polls to workers."""

from __future__ import annotations

from datetime import datetime

from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from studio.models import GenerationJob, Task

from . import poll, slots


def tick(*, now: datetime | None = None) -> tuple[int, int]:
    """Hand free slots and due polls to workers. Returns (submits, polls) sent."""
    now = now or timezone.now()
    submits = polls = 0
    for provider_name in slots.remote_providers_with_work():
        for job_id in slots.dispatch(provider_name=provider_name, now=now):
            async_task("studio.tasks.job_submit", job_id, group="provider")
            submits += 1
    due = list(
        Task.objects.filter(
            job__status__in=GenerationJob.IN_FLIGHT,
            job__task=F("pk"),
            next_poll_at__lte=now,
        ).values_list("pk", "job_id", "next_poll_at")[:100]
    )
    for task_id, job_id, due_at in due:
        # Lease the poll so that no other tick hands it out again meanwhile.
        if Task.objects.filter(pk=task_id, next_poll_at=due_at).update(
            next_poll_at=now + poll.POLL_LEASE
        ):
            async_task("studio.tasks.job_poll", job_id, group="provider")
            polls += 1
    return submits, polls
