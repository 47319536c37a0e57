"""Sending a claimed job's task to its provider, exactly once."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from studio import lifecycle, reconcile
from studio.files import stored_path
from studio.models import GenerationJob, Task
from studio.providers import get_provider
from studio.providers.base import (
    GenerationRequest,
    InputFile,
    ProviderError,
    RemoteProvider,
    as_remote,
)

from . import accounts, slots, timing

log = logging.getLogger(__name__)


class SendWithdrawn(Exception):
    """The job was taken back before its paid request went out: send nothing."""


def dispatch_and_submit(*, provider_name: str) -> list[int]:
    """Fill free slots and send the claimed jobs from this worker at once."""
    claimed = slots.dispatch(provider_name=provider_name)
    for job_id in claimed:
        job_submit(job_id=job_id)
    return claimed


def job_submit(*, job_id: int) -> GenerationJob | None:
    """Send a claimed job to its provider. A redelivered message is a no-op."""
    job = (
        GenerationJob.objects.select_related("portrait", "audio")
        .filter(pk=job_id)
        .first()
    )
    if (
        job is None
        or job.status != GenerationJob.Status.SUBMITTED
        or job.remote_task_id
    ):
        return job
    provider = as_remote(get_provider(job.provider))
    if provider is None:
        return job  # slots.dispatch() claims jobs for remote providers only
    # This dispatch of the job: a requeue and a new dispatch bring `attempts`
    # back to the same number, but never `submit_started_at`.
    mine = GenerationJob.objects.filter(
        pk=job.pk, attempts=job.attempts, submit_started_at=job.submit_started_at
    )
    # Claim the send: slots.dispatch() sets heartbeat_at to submit_started_at, and the
    # first send moves it on. A message redelivered after its worker died
    # mid-submit must not send again (the provider may have made the task); the
    # sweep finds that task in the listing or queues the job again.
    if not mine.filter(
        status=GenerationJob.Status.SUBMITTED,
        remote_task_id="",
        heartbeat_at=F("submit_started_at"),
    ).update(heartbeat_at=timezone.now()):
        log.warning(
            "job %s: submit already begun by an earlier delivery; left to the sweep",
            job.pk,
        )
        return job
    posted = False

    def before_post() -> None:
        # The last moment a taken-back job costs nothing: record that the paid
        # request goes out, unless the sweep took the job back meanwhile.
        nonlocal posted
        now = timezone.now()
        if not mine.filter(
            status=GenerationJob.Status.SUBMITTED,
            remote_task_id="",
            submit_posted_at__isnull=True,
        ).update(submit_posted_at=now, heartbeat_at=now):
            raise SendWithdrawn
        posted = True
        job.submit_posted_at = now
        slots.attempt_task(job).update(submit_posted_at=now)

    try:
        with (
            stored_path(job.portrait.file.name) as portrait,
            stored_path(job.audio.file.name) as audio,
        ):
            request = GenerationRequest(
                job_code=str(job.code),
                portrait=InputFile(
                    portrait, job.portrait.sha256, job.portrait.file.name
                ),
                audio=InputFile(audio, job.audio.sha256, job.audio.file.name),
                resolution=job.resolution,
                audio_seconds=job.audio.duration,
                # Only what the job's offer takes is kept in params (job_create).
                prompt=job.param("prompt"),
                seed=_seed(job.params.get("seed")),
                before_post=before_post,
            )
            result = provider.start(request, lambda fraction: None)
    except SendWithdrawn:
        log.warning("job %s: taken back while it was being sent; not sent", job.pk)
        return GenerationJob.objects.get(pk=job.pk)
    except ProviderError as exc:
        _submit_failed(job, exc)
        return GenerationJob.objects.get(pk=job.pk)
    except Exception as exc:
        # Not a provider answer (a stored input gone, a bug). Before the paid
        # request it would fail the same way each time: fail the job rather
        # than hold the slot again and again. After it, a task may exist.
        log.exception("job %s: submit failed unexpectedly", job.pk)
        if posted:
            error = ProviderError(str(exc), permanent=False, unanswered=True)
            _submit_failed(job, error)
        else:
            lifecycle.fail(
                mine.filter(status=GenerationJob.Status.SUBMITTED, remote_task_id=""),
                code="submit_error",
                message="The studio could not send this job to the provider "
                f"({type(exc).__name__}). Nothing was billed. Retry it; if it "
                "keeps failing, tell an admin.",
            )
        return GenerationJob.objects.get(pk=job.pk)

    now = timezone.now()
    # The queue only submits into a free slot, so the task normally starts
    # at once; the first poll corrects this if it is still PENDING.
    job.remote_started_at = now
    with transaction.atomic():
        saved = mine.filter(
            status=GenerationJob.Status.SUBMITTED, remote_task_id=""
        ).update(
            remote_task_id=result.task_id,
            remote_status=result.remote_status,
            remote_started_at=now,
            heartbeat_at=now,
            recovery=GenerationJob.Recovery.NONE,
            recovery_at=None,
        )
        if saved:
            slots.follow(
                job,
                task_id=result.task_id,
                word=result.remote_status,
                now=now,
                next_poll_at=timing.plan_next_poll(job, now=now),
            )
    accounts.clear_pause(provider.name)
    if not saved:
        # Kept on record, never followed: see below.
        reconcile.remember_task(
            job=job,
            task_id=result.task_id,
            status=result.remote_status,
            opened=_opened(job),
            started_at=now,
        )
        current = GenerationJob.objects.get(pk=job.pk)
        if current.status == GenerationJob.Status.CANCELED:
            # Canceled while the submit was on its way: withdraw the task again.
            log.info(
                "job %s: canceled during submit; canceling task %s",
                job.pk,
                result.task_id,
            )
            if try_cancel(provider, result.task_id):
                reconcile.remember_task(
                    job=job,
                    task_id=result.task_id,
                    status=slots.canceled_word(job.provider),
                )
        elif current.remote_task_id != result.task_id:
            # The answer came after the sweep had moved the job on (it adopted
            # another task or queued the job again). Never cancel what may be
            # the job's own task; the task record keeps this one for the
            # reconciliation to find if it was billed.
            log.error(
                "job %s: task %s was answered after the job moved on; kept on "
                "record, not canceled",
                job.pk,
                result.task_id,
            )
        return current
    return GenerationJob.objects.get(pk=job.pk)


def _opened(job: GenerationJob) -> int | None:
    """The attempt's task while it waits for its id (see Task.open)."""
    return (
        slots.attempt_task(job)
        .filter(remote_id="")
        .values_list("pk", flat=True)
        .first()
    )


def _seed(value: object) -> int | None:
    """A stored seed, or None (the provider picks one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _submit_failed(job: GenerationJob, exc: ProviderError) -> None:
    now = timezone.now()
    current = GenerationJob.objects.filter(
        pk=job.pk,
        attempts=job.attempts,
        submit_started_at=job.submit_started_at,
        status=GenerationJob.Status.SUBMITTED,
        remote_task_id="",
    )
    if exc.permanent and not exc.about_account:
        lifecycle.fail(current, code=exc.code, message=str(exc))
        return
    if exc.unanswered:
        # The provider may have made (and will bill) a task whose id never came
        # back. Sending again could pay twice: keep the job SUBMITTED and in its
        # slot, and let the sweep find the task in the listing or, when there is
        # none, queue the job again (sweep_remote, provider-api.md §1.2a).
        current.update(
            heartbeat_at=now,
            recovery=GenerationJob.Recovery.CHECKING,
            recovery_at=now,
        )
        log.warning(
            "job %s: submit unanswered (%s); the sweep looks for its task",
            job.pk,
            exc.code or exc.kind,
        )
        return
    if exc.about_account:
        accounts.pause_account(
            provider_name=job.provider, code=exc.code, message=str(exc)
        )
    # The provider made no task: the attempt's task ends here, on record.
    slots.attempt_task(job).filter(remote_id="", state__in=Task.ACTIVE).update(
        state=Task.State.FAILED,
        ended_at=now,
        error_code=(exc.code or exc.kind)[:64],
        error_message=str(exc),
    )
    deadline = job.queued_at + timedelta(minutes=settings.S2V_SUBMIT_DEADLINE_MINUTES)
    if not exc.about_account and now > deadline:
        lifecycle.fail(
            current,
            code=exc.code or "provider_unavailable",
            message="The provider stayed busy or unreachable for "
            f"{settings.S2V_SUBMIT_DEADLINE_MINUTES // 60} h. Nothing was billed; retry later.",
        )
        return
    # Not this job's fault: back to the queue, not counted as an attempt, and
    # sent again later the more often the provider refused it.
    refused = Task.objects.filter(
        job=job, remote_id="", state=Task.State.FAILED
    ).count()
    current.update(
        status=GenerationJob.Status.QUEUED,
        attempts=F("attempts") - 1,
        submit_started_at=None,
        submit_posted_at=None,
        not_before=now + timing.retry_wait(exc, refused - 1),
    )
    log.warning(
        "job %s: submit failed (%s); queued again", job.pk, exc.code or exc.kind
    )


def try_cancel(provider: RemoteProvider, task_id: str) -> bool:
    try:
        return provider.cancel(task_id)
    except ProviderError:
        return False


def free_slot(provider_name: str) -> None:
    # Runs inside a worker: claim and send the next job right away.
    try:
        dispatch_and_submit(provider_name=provider_name)
    except Exception:  # the tick will try again within a second
        log.exception("dispatch after a finished task failed")
