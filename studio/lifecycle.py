"""The end of a job: the one place that finishes, fails or cancels one.

Local renders (services.job_run) and remote tasks (studio.queue) both end
their jobs here, so a finished job is settled, stored and announced the same
way whoever made it:

* the job's row changes under the caller's fence (a queryset that matches the
  job only while it is still the caller's attempt), and in the same
  transaction billing settles it (releases its hold, charges what the
  provider billed): the ledger never disagrees with the job;
* a succeeded job's video and poster are stored in that transaction too;
* then the author is notified and `job_finished` is sent, once per job that
  this call ended. A call whose fence matched nothing (another worker, the
  sweep or a cancel got there first) changes, charges and sends nothing.

Who decides that a job ends, and why, stays with the callers: the queue
knows about tasks, retries and lost submits, services about local attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from django.core.files import File
from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone

from . import billing, catalog
from .media.video import VideoInfo
from .models import GenerationJob, Task
from .notifications import notify_job_finished

log = logging.getLogger(__name__)

# Sent once per job that ends (succeeded, failed or canceled), after the change
# and its settlement are committed. sender=GenerationJob; kwargs: job (the
# ended GenerationJob, as stored) and outcome (its GenerationJob.Status).
job_finished = Signal()

# Statuses a job can end from. A queued job can only be canceled; callers'
# fences narrow this further.
_ENDABLE = (
    GenerationJob.Status.QUEUED,
    GenerationJob.Status.SUBMITTED,
    GenerationJob.Status.RUNNING,
)


def complete(
    current: QuerySet[GenerationJob],
    *,
    video: Path,
    poster: Path | None,
    media: VideoInfo,
    billed_seconds: Decimal | None = None,
) -> GenerationJob | None:
    """Store a made video and end its in-flight job as succeeded, charged.

    `billed_seconds` is what the provider billed, when it said so in this
    answer; otherwise the seconds already recorded on the job (a remote
    task's poll), else what the offer's billing rule makes of the video's or
    the input's length. Returns the job, or None when the
    fence matched no in-flight job (nothing is stored or charged then).
    """
    with transaction.atomic():
        job = (
            current.select_for_update()
            .filter(status__in=GenerationJob.IN_FLIGHT)
            .first()
        )
        if job is None:
            return None
        with video.open("rb") as fh:
            job.video.save("video.mp4", File(fh), save=False)
        if poster is not None and poster.exists():
            with poster.open("rb") as fh:
                job.poster.save("poster.jpg", File(fh), save=False)
        billed = billed_seconds if billed_seconds is not None else job.billed_seconds
        if billed is None:
            billed = _billed_fallback(job, media)
        job.billed_seconds = billed
        job.cost = billing.generation_cost(
            provider=job.provider, resolution=job.resolution, seconds=billed
        )
        job.currency = billing.currency()
        job.video_duration = media.duration
        job.width, job.height = media.width, media.height
        job.status = GenerationJob.Status.SUCCEEDED
        job.progress = 1.0
        job.finished_at = timezone.now()
        job.error_code = job.error_message = ""
        job.save()
        # What the task that made the video cost: the one whose id the job
        # follows (the ledger line references it), or a local render's.
        made = Task.objects.filter(job=job, remote_id=job.remote_task_id)
        if not job.remote_task_id:
            made = made.filter(state__in=Task.ACTIVE)
        made.update(
            state=Task.State.SUCCEEDED,
            # When the provider's answer said it ended, else now.
            ended_at=Coalesce(F("ended_at"), Value(job.finished_at)),
            billed_seconds=billed,
            cost=job.cost,
            currency=job.currency,
        )
        _close_tasks(job.pk, GenerationJob.Status.SUCCEEDED, now=job.finished_at)
        billing.job_finished(job_id=job.pk)
    _announce(job.pk, GenerationJob.Status.SUCCEEDED)
    return job


def fail(
    current: QuerySet[GenerationJob],
    *,
    code: str,
    message: str,
    fields: Mapping[str, object] | None = None,
) -> list[int]:
    """End the in-flight jobs `current` matches as failed, settled. Returns their ids.

    A failed job is charged only if its provider billed it anyway (a task
    that succeeded but whose video could not be saved: billing decides).
    """
    return _end(
        current.filter(status__in=GenerationJob.IN_FLIGHT),
        GenerationJob.Status.FAILED,
        {
            "error_code": (code or "failed")[:64],
            "error_message": message,
            **(fields or {}),
        },
    )


def cancel(
    current: QuerySet[GenerationJob], *, fields: Mapping[str, object] | None = None
) -> list[int]:
    """End the jobs `current` matches as canceled, hold released. Returns their ids.

    The caller's fence says which jobs may still be canceled (queued, or a
    task withdrawn at the provider); a job already ended is never changed.
    """
    return _end(
        current.filter(status__in=_ENDABLE),
        GenerationJob.Status.CANCELED,
        dict(fields or {}),
    )


def _end(
    current: QuerySet[GenerationJob],
    outcome: GenerationJob.Status,
    fields: dict[str, object],
) -> list[int]:
    ended = []
    for job_id in list(current.values_list("pk", flat=True)):
        with transaction.atomic():
            # The fence is applied again by the write itself: only a job still
            # matching it changes, so two callers never both end one job.
            now = timezone.now()
            if not current.filter(pk=job_id).update(
                status=outcome, finished_at=now, **fields
            ):
                continue
            _close_tasks(job_id, outcome, now=now)
            billing.job_finished(job_id=job_id)
        ended.append(job_id)
        _announce(job_id, outcome)
    return ended


def _close_tasks(job_id: int, outcome: GenerationJob.Status, *, now: datetime) -> None:
    """No more polls for an ended job; its other tasks that never got an id end with it.

    A task with an id keeps the provider's last word: the studio stopped
    following it, which does not make it failed or canceled there.
    """
    tasks = Task.objects.filter(job_id=job_id)
    tasks.exclude(next_poll_at=None).update(next_poll_at=None)
    state = (
        Task.State.CANCELED
        if outcome == GenerationJob.Status.CANCELED
        else Task.State.FAILED
    )
    tasks.filter(remote_id="", state__in=Task.ACTIVE).update(state=state, ended_at=now)


def _announce(job_id: int, outcome: GenerationJob.Status) -> None:
    """Tell the author and the listeners that a job ended (once per ending)."""
    notify_job_finished(job_id)
    job = GenerationJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    # A listener's failure must not undo or repeat the ending (the job is
    # committed and settled): it is logged for whoever owns the listener.
    for receiver, result in job_finished.send_robust(
        sender=GenerationJob, job=job, outcome=outcome
    ):
        if isinstance(result, Exception):
            log.error(
                "job %s: job_finished listener %r failed",
                job_id,
                receiver,
                exc_info=result,
            )


def _billed_fallback(job: GenerationJob, media: VideoInfo) -> Decimal:
    """Billed seconds when no provider said: the offer's rule on the length it bills."""
    length = Decimal(f"{media.duration:.2f}")
    try:
        rule = catalog.offer(job.provider, job.model).billing
    except catalog.UnknownChoice:
        return length
    if rule.basis == "input":
        length = Decimal(f"{job.audio.duration:.2f}")
    return rule.seconds(length)
