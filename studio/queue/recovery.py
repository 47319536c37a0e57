"""Submits whose answer was lost: adopted from the listing, queued again, or marked."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from studio import lifecycle
from studio.models import GenerationJob, Task
from studio.providers import get_provider
from studio.providers.base import ListedTask, ProviderError, TaskState, as_remote

from . import poll, slots, submit, timing

log = logging.getLogger(__name__)


# A submit that never saved its task id is looked for after this long...
LOST_SUBMIT_AFTER = timedelta(minutes=2)


# ...and marked for an admin when the listing has not settled it after this long,
# so that within 10 minutes of a crash every job is adopted, queued again or
# marked (with the minute sweep, at most 7 minutes).
LOST_SUBMIT_DECIDE = timedelta(minutes=6)


# A submit that never sent its paid request is taken back after this long: no
# task can exist. Long enough for a slow upload of the inputs to finish.
UNSENT_SUBMIT_AFTER = timedelta(minutes=5)


# Clocks differ a little: a task created this long before its job's submit
# began may still be the job's.
CLOCK_SLACK = timedelta(minutes=1)


# Listed tasks that cannot be a lost job's: failures are free (§3.3, §9.5) and a
# failed task may be one a retried job left behind, so resubmitting costs nothing.
# Compared as the studio's states: providers' own words differ.
NOT_ADOPTABLE = frozenset({TaskState.EXPIRED, TaskState.CANCELED, TaskState.FAILED})


def sweep_remote(*, now: datetime) -> list[int]:
    """Recover remote jobs a crash left behind. Returns the ids it touched."""
    providers = (
        GenerationJob.objects.filter(
            status=GenerationJob.Status.SUBMITTED,
            remote_task_id="",
            submit_started_at__lt=now - LOST_SUBMIT_AFTER,
        )
        .values_list("provider", flat=True)
        .distinct()
    )
    touched = []
    for provider_name in [
        name for name in providers if slots.is_remote(name) and slots.configured(name)
    ]:
        touched += _recover_lost_submits(provider_name, now=now)
    # A leased poll whose worker died expires by itself (the tick hands out any
    # due poll). A job in flight with a task id whose current task is not
    # followed (no poll planned, or no such record: a worker died between two
    # writes) is asked about now; the poll moves it on whatever the task did.
    unfollowed = (
        GenerationJob.objects.filter(status__in=GenerationJob.IN_FLIGHT)
        .exclude(remote_task_id="")
        .exclude(task__remote_id=F("remote_task_id"), task__next_poll_at__isnull=False)
    )
    for job in unfollowed:
        followed = poll.current_task(job)
        # At once, also when the sweep runs with a later `now` (tests).
        Task.objects.filter(pk=followed.pk).update(
            next_poll_at=min(now, timezone.now())
        )
        touched.append(job.pk)
    return touched


def _recover_lost_submits(provider_name: str, *, now: datetime) -> list[int]:
    """Settle the jobs of one account whose submit never saved a task id.

    Each is adopted (its task is in the listing), queued again (the listing
    answered and shows no unknown task since its submit began), or, when the
    listing fails or cannot tell whose task is whose, marked for an admin and
    failed once the account is idle or S2V_LOST_SUBMIT_GRACE_MINUTES passed.
    """
    lost = list(
        GenerationJob.objects.filter(
            provider=provider_name,
            status=GenerationJob.Status.SUBMITTED,
            remote_task_id="",
            submit_started_at__lt=now - LOST_SUBMIT_AFTER,
        ).order_by("submit_started_at", "id")
    )
    # The paid request never went out: no task exists, so sending again is safe
    # (a worker still uploading finds the job taken back and sends nothing).
    unsent = [
        job
        for job in lost
        if job.submit_posted_at is None
        and now - (job.submit_started_at or now) >= UNSENT_SUBMIT_AFTER
    ]
    for job in unsent:
        _requeue_lost(job, now=now, why="its paid request was never sent")
    lost = [
        job
        for job in lost
        if job.submit_posted_at is not None
        and job.submit_posted_at < now - LOST_SUBMIT_AFTER
    ]
    for job in lost:
        if not job.recovery:
            _mark(job, GenerationJob.Recovery.CHECKING, now=now)
            log.warning(
                "job %s: submit sent %s and saved no task id; checking with the "
                "provider whether it received it",
                job.pk,
                _iso(job.submit_posted_at),
            )
    if not lost:
        return [job.pk for job in unsent]
    earliest = min(job.submit_posted_at or now for job in lost)
    provider = as_remote(get_provider(provider_name))
    try:
        if provider is None:
            raise ProviderError(f"{provider_name} has no task listing")
        listed = provider.listed_tasks(since=earliest - CLOCK_SLACK)
    except Exception as exc:
        # Not knowing is not "never arrived": requeueing could pay twice.
        if not isinstance(exc, ProviderError):
            log.exception(
                "lost submits on %s: listing failed unexpectedly", provider_name
            )
        for job in lost:
            log.warning(
                "job %s: lost submit; listing failed: %s; asking again at the next sweep",
                job.pk,
                exc,
            )
            _undecided(job, now=now, reason=f"the task listing failed ({exc})")
        return [job.pk for job in unsent + lost]

    # Which listed tasks the studio knows: saved on a job, or had by any job
    # (a retried job's earlier tasks included).
    listed_ids = [t.task_id for t in listed]
    known = set(
        GenerationJob.objects.filter(remote_task_id__in=listed_ids).values_list(
            "remote_task_id", flat=True
        )
    ) | set(
        Task.objects.filter(remote_id__in=listed_ids).values_list(
            "remote_id", flat=True
        )
    )
    unknown = [t for t in listed if t.task_id not in known]
    account_busy = any(t.state.active for t in unknown)
    candidates = [t for t in unknown if t.state not in NOT_ADOPTABLE]
    adopt, requeue, ambiguous = match_lost(lost, candidates)
    for job in requeue:
        _requeue_lost(job, now=now)
    for job, task in adopt:
        _adopt(job, task, now=now)
    for job in ambiguous:
        log.warning(
            "job %s: lost submit; the listing shows %d unknown task(s) for %d lost "
            "job(s) since %s: cannot tell which is this job's",
            job.pk,
            len(candidates),
            len(ambiguous),
            _iso(job.submit_posted_at),
        )
        _undecided(
            job,
            now=now,
            reason="the provider lists tasks the studio cannot tell apart",
            account_busy=account_busy,
        )
    return [job.pk for job in unsent + lost]


def match_lost(
    jobs: list[GenerationJob], tasks: list[ListedTask]
) -> tuple[
    list[tuple[GenerationJob, ListedTask]], list[GenerationJob], list[GenerationJob]
]:
    """Pair lost jobs with unknown listed tasks: (adopt, requeue, ambiguous).

    A task is a job's only if it was created while the job's paid request could
    have been handled (from when it was sent to LOST_SUBMIT_AFTER later, give or
    take CLOCK_SLACK): the account may be shared with other applications. A job
    no unknown task could be made none: it is queued again. The others adopt in
    creation order when there are exactly as many tasks as jobs and each fits
    its job; anything else cannot be told apart and is ambiguous.
    """
    jobs = sorted(jobs, key=lambda j: (_sent(j), j.pk))
    tasks = sorted(tasks, key=lambda t: t.submitted_at or timing.EPOCH)

    def could_be(job: GenerationJob, task: ListedTask) -> bool:
        sent = _sent(job)
        return task.submitted_at is None or (
            sent - CLOCK_SLACK
            <= task.submitted_at
            <= sent + LOST_SUBMIT_AFTER + CLOCK_SLACK
        )

    requeue = [job for job in jobs if not any(could_be(job, t) for t in tasks)]
    rest = [job for job in jobs if job not in requeue]
    if not rest:
        return [], requeue, []
    relevant = [t for t in tasks if could_be(rest[0], t)]
    dated = all(t.submitted_at is not None for t in relevant) or len(rest) == 1
    if (
        dated
        and len(relevant) == len(rest)
        and all(could_be(job, t) for job, t in zip(rest, relevant, strict=True))
    ):
        return list(zip(rest, relevant, strict=True)), requeue, []
    return [], requeue, rest


def _sent(job: GenerationJob) -> datetime:
    return job.submit_posted_at or job.submit_started_at or timing.EPOCH


def _lost(job: GenerationJob) -> QuerySet[GenerationJob]:
    """The job, only while it is still the same lost submit."""
    return GenerationJob.objects.filter(
        pk=job.pk,
        attempts=job.attempts,
        submit_started_at=job.submit_started_at,
        submit_posted_at=job.submit_posted_at,
        status=GenerationJob.Status.SUBMITTED,
        remote_task_id="",
    )


def _mark(
    job: GenerationJob, recovery: GenerationJob.Recovery, *, now: datetime
) -> None:
    """Record how far recovering the lost submit has got, on the job and its row."""
    job.recovery, job.recovery_at = recovery, now
    _lost(job).update(recovery=recovery, recovery_at=now)


def _adopt(job: GenerationJob, task: ListedTask, *, now: datetime) -> None:
    with transaction.atomic():
        # Elimination: a task id saved on any job is never adopted by another.
        if (
            GenerationJob.objects.filter(remote_task_id=task.task_id).exists()
            or Task.objects.filter(remote_id=task.task_id).exists()
        ):
            log.warning(
                "job %s: task %s already belongs to a job; not adopted",
                job.pk,
                task.task_id,
            )
            return
        # The listing's word only while the task runs: a poll brings the
        # rest (the result URL and billed seconds come with it).
        word = task.status if task.state.active else ""
        adopted = _lost(job).update(
            remote_task_id=task.task_id,
            remote_status=word,
            heartbeat_at=now,
            recovery=GenerationJob.Recovery.NONE,
            recovery_at=None,
        )
        if adopted:
            slots.follow(
                job,
                task_id=task.task_id,
                word=word,
                now=now,
                # Ask at once, also when the sweep runs with a later `now` (tests).
                next_poll_at=min(now, timezone.now()),
            )
    if adopted:
        log.warning(
            "job %s: adopted task %s (created %s, %s) lost in a crash",
            job.pk,
            task.task_id,
            _iso(task.submitted_at),
            task.status,
        )
    else:
        log.info("job %s: changed meanwhile; task %s not adopted", job.pk, task.task_id)


def _requeue_lost(job: GenerationJob, *, now: datetime, why: str = "") -> None:
    if _lost(job).update(
        status=GenerationJob.Status.QUEUED,
        attempts=F("attempts") - 1,
        submit_started_at=None,
        submit_posted_at=None,
        recovery=GenerationJob.Recovery.NONE,
        recovery_at=None,
    ):
        Task.take_back(job.pk, now=now)
        log.warning(
            "job %s: lost submit; %s; queued again",
            job.pk,
            why or f"no match in the listing since {_iso(job.submit_posted_at)}",
        )
    else:
        log.info("job %s: lost submit; no match, but the job changed meanwhile", job.pk)


def _undecided(
    job: GenerationJob, *, now: datetime, reason: str, account_busy: bool | None = None
) -> None:
    """Keep asking for a while; then mark the job for an admin, and free its slot
    once the provider shows nothing running that could be its task (account_busy
    False) or, when even that is unknowable (None), after the grace period."""
    began = job.submit_posted_at or job.submit_started_at or now
    if now - began < LOST_SUBMIT_DECIDE:
        return
    if job.recovery != GenerationJob.Recovery.ADMIN:
        _mark(job, GenerationJob.Recovery.ADMIN, now=now)
        log.error(
            "job %s: lost submit marked for an admin: %s; the provider may have "
            "made this video; check the bill",
            job.pk,
            reason,
        )
    grace = timedelta(minutes=settings.S2V_LOST_SUBMIT_GRACE_MINUTES)
    marked = job.recovery_at or now
    if account_busy is False:
        why = "the listing shows nothing pending or running"
    elif now - marked >= grace:
        why = f"{settings.S2V_LOST_SUBMIT_GRACE_MINUTES} min passed since it was marked"
    else:
        log.info(
            "job %s: marked for an admin; keeps its slot while the provider %s",
            job.pk,
            "shows a task running" if account_busy else "cannot say whether it is idle",
        )
        return
    lifecycle.fail(
        _lost(job),
        code="unverified_submit",
        message=(
            "The provider may have made this video, but its answer was lost and "
            "the studio cannot tell. Nothing was charged to your budget; an admin "
            "will check the provider's bill."
        ),
    )
    log.error(
        "job %s: lost submit failed for an admin's check; slot freed: %s", job.pk, why
    )
    submit.free_slot(job.provider)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "?"
