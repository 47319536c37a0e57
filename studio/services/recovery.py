"""Jobs whose worker or task message was lost: the sweep, take-backs and re-sends."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from studio.models import GenerationJob, Task
from studio.queue import recovery, slots, tick

from .jobs import _enqueue_after_commit, _job_fail

log = logging.getLogger(__name__)


def jobs_sweep(*, now: datetime | None = None) -> list[int]:
    """Take back in-flight jobs whose worker stopped reporting. Returns their ids.

    A job with attempts left goes back to the queue; after the last attempt it
    fails with a message, so no job stays "running" forever.
    """
    now = now or timezone.now()
    recovered = recovery.sweep_remote(now=now)
    # Without a running dispatcher process, this minute sweep still moves remote
    # jobs along, only more slowly.
    tick.tick(now=now)
    if settings.Q_CLUSTER.get("redis"):
        recovered += _resend_lost_messages(now=now)
    cutoff = now - timedelta(seconds=settings.S2V_STALE_SECONDS)
    stale = GenerationJob.objects.filter(
        status__in=GenerationJob.IN_FLIGHT, heartbeat_at__lt=cutoff
    )
    for job in stale.only("pk", "attempts", "provider"):
        if slots.is_remote(job.provider):
            continue  # remote tasks keep running at the provider; polling resumes them
        if _take_back(job):
            recovered.append(job.pk)
    return recovered


def jobs_take_back(*, workers: list[str]) -> list[int]:
    """Take back the in-flight local jobs of dead task-queue clusters. Returns their ids."""
    lost = GenerationJob.objects.filter(
        status__in=GenerationJob.IN_FLIGHT, worker__in=workers
    )
    return [
        job.pk
        for job in lost.only("pk", "attempts", "provider")
        if not slots.is_remote(job.provider) and _take_back(job)
    ]


def _take_back(job: GenerationJob) -> bool:
    """Queue the job's attempt again, or fail it after the last one."""
    current = GenerationJob.objects.filter(
        pk=job.pk, attempts=job.attempts, status__in=GenerationJob.IN_FLIGHT
    )
    if job.attempts < settings.S2V_MAX_ATTEMPTS:
        with transaction.atomic():
            if not current.update(status=GenerationJob.Status.QUEUED, progress=0.0):
                return False
            Task.take_back(job.pk, now=timezone.now())
            _enqueue_after_commit(job)
        log.warning("job %s: worker stopped; queued again", job.pk)
        return True
    _job_fail(
        current,
        code="worker_lost",
        message="The worker stopped while making this video, "
        f"{job.attempts} times. Retry it; if it keeps failing, tell an admin.",
    )
    log.error("job %s: worker stopped on every attempt; failed", job.pk)
    return True


def _resend_lost_messages(*, now: datetime) -> list[int]:
    """Send again the queued local jobs whose task message may be lost.

    The Redis broker never redelivers: a message a cluster had pulled but not
    started is gone when that cluster is killed. A job queued for longer than
    the broker's retry period is sent again, at most once a period; a duplicate
    message is harmless because the claim is conditional. (`heartbeat_at` of a
    queued job records when it was last sent.) When a dead cluster is noticed
    sooner, `jobs_resend_queued` does this at once (studio/broker.py).
    """
    period = timedelta(seconds=settings.Q_CLUSTER.get("retry", 960))
    waiting = GenerationJob.objects.filter(
        status=GenerationJob.Status.QUEUED, queued_at__lt=now - period
    ).filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - period))
    return _resend(waiting, now=now)


def jobs_resend_queued(*, exclude: list[int]) -> list[int]:
    """Send every queued local job again (but those in `exclude`, just sent): a
    dead cluster may have popped its message."""
    waiting = GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED).exclude(
        pk__in=exclude
    )
    return _resend(waiting, now=timezone.now())


def _resend(waiting: QuerySet[GenerationJob], *, now: datetime) -> list[int]:
    resent = []
    for job in waiting.only("pk", "provider"):
        if slots.is_remote(job.provider):
            continue  # remote jobs wait in the table, not in the broker
        with transaction.atomic():
            if GenerationJob.objects.filter(
                pk=job.pk, status=GenerationJob.Status.QUEUED
            ).update(heartbeat_at=now):
                _enqueue_after_commit(job)
                resent.append(job.pk)
    if resent:
        log.warning("re-sent %d queued jobs whose messages may be lost", len(resent))
    return resent
