"""Following a task at the provider until its video is in storage."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from studio import catalog, lifecycle, reconcile, scratch
from studio.media.images import InputError
from studio.media.posters import make_poster
from studio.media.video import probe_video
from studio.models import GenerationJob, Task
from studio.providers import get_provider
from studio.providers.base import (
    ProviderError,
    RemoteProvider,
    TaskResult,
    TaskState,
    as_remote,
)

from . import accounts, slots, submit, timing

log = logging.getLogger(__name__)


# A poll handed to a worker is not handed out again for this long.
POLL_LEASE = timedelta(seconds=60)


# Task ids and result URLs live 24 h at the provider (provider-api.md §1.6).
# A task the provider calls unknown this long before its lifetime ends is
# taken as expired; earlier, as a hiccup to ask about again.
EXPIRY_MARGIN = timedelta(hours=1)


def job_poll(*, job_id: int) -> GenerationJob | None:
    """Ask the provider about a job's task and act on the answer."""
    job = GenerationJob.objects.select_related("audio").filter(pk=job_id).first()
    if (
        job is None
        or job.status not in GenerationJob.IN_FLIGHT
        or not job.remote_task_id
    ):
        return job
    provider = as_remote(get_provider(job.provider))
    if provider is None:
        return job  # a local job has no task to ask about
    task = current_task(job)
    now = timezone.now()
    mine = GenerationJob.objects.filter(
        pk=job.pk, attempts=job.attempts, status__in=GenerationJob.IN_FLIGHT
    )
    this_task = Task.objects.filter(pk=task.pk)
    if (
        slots.state_of(job.provider, job.remote_status) == TaskState.SUCCEEDED
        and job.result_url
    ):
        # The task is done; an earlier copy of its result failed. Try again.
        return _store_result(job, task, provider, video_url=job.result_url)

    try:
        result = provider.poll(job.remote_task_id)
    except ProviderError as exc:
        if exc.about_account:
            accounts.pause_account(
                provider_name=job.provider, code=exc.code, message=str(exc)
            )
        lifetime = catalog.provider(job.provider).task_lifetime
        if job.submit_started_at and now - job.submit_started_at > lifetime:
            lifecycle.fail(
                mine,
                code=exc.code or "lost_contact",
                message=(
                    f"The studio could not reach the provider for {timing.span(lifetime)}; "
                    "the task has expired there. Retry the video."
                ),
            )
            return GenerationJob.objects.get(pk=job.pk)
        this_task.update(
            next_poll_at=now + timing.retry_wait(exc, task.polls), polls=F("polls") + 1
        )
        return GenerationJob.objects.get(pk=job.pk)

    accounts.clear_pause(provider.name)
    lifetime = catalog.provider(job.provider).task_lifetime
    if (
        result.state == TaskState.EXPIRED
        and job.submit_started_at
        and now - job.submit_started_at < lifetime - EXPIRY_MARGIN
    ):
        # A provider forgets tasks only after their lifetime: "unknown" this
        # early is a hiccup (or a listing lag), not an expiry. Ask again later;
        # the failure below comes once the lifetime has really passed.
        log.warning(
            "job %s: the provider does not know task %s yet; asking again",
            job.pk,
            job.remote_task_id,
        )
        this_task.update(
            next_poll_at=now + timing.backoff(task.polls + 1), polls=F("polls") + 1
        )
        return GenerationJob.objects.get(pk=job.pk)
    if not result.state.active:
        reconcile.remember_task(
            job=job,
            task_id=job.remote_task_id,
            status=result.remote_status,
            billed_seconds=result.billed_seconds,
            ended_at=now,
            provider_scheduled_at=result.scheduled_at,
            provider_ended_at=result.ended_at,
            result_url=result.video_url,
            error_code=result.error_code[:64],
            error_message=result.error_message,
        )
    fields: dict[str, object] = {
        "heartbeat_at": now,
        "remote_status": result.remote_status,
    }
    if result.scheduled_at is not None:
        fields["provider_scheduled_at"] = result.scheduled_at
    if result.state.active:
        if result.state == TaskState.RUNNING:
            job.remote_started_at = timing.running_since(job, result, now=now)
            fields["status"] = GenerationJob.Status.RUNNING
        else:
            job.remote_started_at = None  # waiting behind another task of the account
        fields["remote_started_at"] = job.remote_started_at
        expected = timing.expected_remote_seconds(job)  # one history read for both
        fields["progress"] = timing.progress_at(job, now, expected=expected)
        if mine.update(**fields):
            this_task.update(
                state=result.state.value,
                remote_status=result.remote_status[:16],
                started_at=job.remote_started_at,
                provider_scheduled_at=result.scheduled_at,
                next_poll_at=timing.plan_next_poll(job, now=now, expected=expected),
                polls=F("polls") + 1,
            )
        return GenerationJob.objects.get(pk=job.pk)

    if result.state == TaskState.SUCCEEDED:
        fields.update(result_url=result.video_url, billed_seconds=result.billed_seconds)
        # Both set, even to None, so that an earlier attempt's times never linger.
        fields["provider_scheduled_at"] = result.scheduled_at
        fields["provider_ended_at"] = result.ended_at
        fields["remote_seconds"] = timing.run_seconds(job, result, now=now)
        mine.update(**fields)
        # Leased while this worker copies the result; asked again if it dies.
        this_task.update(polls=F("polls") + 1, next_poll_at=now + POLL_LEASE)
        # The slot is free now: send the next job before copying this result.
        submit.free_slot(provider.name)
        job.refresh_from_db()
        return _store_result(job, task, provider, video_url=result.video_url)

    this_task.update(polls=F("polls") + 1, next_poll_at=None)
    if result.state == TaskState.CANCELED:
        lifecycle.cancel(mine, fields=fields)
    elif result.retryable and job.attempts < settings.S2V_MAX_ATTEMPTS:
        # A provider-side failure is not billed: queue the job for a new task.
        mine.update(
            status=GenerationJob.Status.QUEUED,
            remote_task_id="",
            remote_status="",
            not_before=now + timing.backoff(1),
        )
        log.warning(
            "job %s: task failed with %s; queued again", job.pk, result.error_code
        )
    else:
        lifecycle.fail(
            mine, code=result.error_code or "failed", message=result.error_message
        )
    submit.free_slot(provider.name)
    return GenerationJob.objects.get(pk=job.pk)


def current_task(job: GenerationJob) -> Task:
    """The task the job's attempt follows at the provider (job.remote_task_id).

    Recorded when its id came back; a record lost to an error is made again
    and becomes the job's current task.
    """
    task = job.task if job.task and job.task.remote_id == job.remote_task_id else None
    if task is None:
        task = (
            Task.objects.filter(job=job, remote_id=job.remote_task_id)
            .order_by("id")
            .last()
        )
    if task is None:
        reconcile.remember_task(
            job=job, task_id=job.remote_task_id, status=job.remote_status
        )
        task = Task.objects.get(job=job, remote_id=job.remote_task_id)
    if job.task_id != task.pk:
        GenerationJob.objects.filter(pk=job.pk).update(task=task)
        job.task = task
    return task


def _store_result(
    job: GenerationJob, task: Task, provider: RemoteProvider, *, video_url: str
) -> GenerationJob:
    """Copy a finished task's video into storage, make its poster, record the cost."""
    now = timezone.now()
    mine = GenerationJob.objects.filter(
        pk=job.pk, attempts=job.attempts, status__in=GenerationJob.IN_FLIGHT
    )
    with scratch.folder("s2v-result") as tmp:
        video, poster = Path(tmp) / "video.mp4", Path(tmp) / "poster.jpg"
        try:
            with video.open("wb") as dest:
                provider.fetch(
                    TaskResult(
                        task_id=job.remote_task_id,
                        state=TaskState.SUCCEEDED,
                        video_url=video_url,
                    ),
                    dest,
                )
            media = probe_video(video)
            make_poster(video, poster)
        except InputError as exc:
            lifecycle.fail(
                mine,
                code=exc.code,
                message=f"The provider's video could not be read: {exc.message}",
            )
            return GenerationJob.objects.get(pk=job.pk)
        except ProviderError as exc:
            ended = job.heartbeat_at or now
            if (
                exc.permanent
                or now - ended > catalog.provider(job.provider).task_lifetime
            ):
                lost = " The provider billed the video, but it could not be saved."
                lifecycle.fail(
                    mine,
                    code=exc.code or "result_lost",
                    message=f"{exc}{'' if exc.kind == 'withheld' else lost}",
                )
            else:
                Task.objects.filter(pk=task.pk).update(
                    next_poll_at=now + timing.backoff(task.polls), polls=F("polls") + 1
                )
            return GenerationJob.objects.get(pk=job.pk)

        done = lifecycle.complete(mine, video=video, poster=poster, media=media)
        return done or GenerationJob.objects.get(pk=job.pk)


def job_cancel_remote(*, job: GenerationJob) -> bool:
    """Withdraw a job whose task may be PENDING at the provider. False if it runs."""
    provider = as_remote(get_provider(job.provider))
    if provider is None:
        return False
    if not job.remote_task_id:
        # Still being submitted: job_submit withdraws the task when it sees this.
        # Only before the send began (see job_submit's claim): once it has, a
        # task may exist with no id to withdraw it by, and if that worker dies
        # nobody would. The sweep settles such a job.
        withdrawn = lifecycle.cancel(
            GenerationJob.objects.filter(
                pk=job.pk,
                status=GenerationJob.Status.SUBMITTED,
                remote_task_id="",
                recovery=GenerationJob.Recovery.NONE,
                heartbeat_at=F("submit_started_at"),
            )
        )
        return bool(withdrawn)
    if slots.state_of(job.provider, job.remote_status) not in (
        None,
        TaskState.PENDING,
    ) or not submit.try_cancel(provider, job.remote_task_id):
        return False
    canceled = slots.canceled_word(job.provider)
    reconcile.remember_task(
        job=job, task_id=job.remote_task_id, status=canceled, ended_at=timezone.now()
    )
    updated = lifecycle.cancel(
        GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.IN_FLIGHT),
        fields={"remote_status": canceled},
    )
    submit.free_slot(provider.name)
    return bool(updated)
