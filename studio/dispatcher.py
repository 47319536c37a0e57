"""The queue in front of remote providers.

A provider account runs a fixed number of tasks at once (one for wan2.2-s2v),
so the studio is the queue. `dispatch` fills free slots under a row lock on
the account (race-free across processes and machines on PostgreSQL; SQLite
serialises writers anyway), choosing teams round robin. `job_submit` sends one
claimed job; `job_poll` asks about one task, and the moment the provider says a
task ended the next job goes out, before the result is copied into storage.
`tick` is what the dispatcher process (and, as a fallback, the minute sweep)
runs: fill slots and hand due polls to workers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from statistics import median

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Max, Min, Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from . import billing, catalog, lifecycle, reconcile, scratch
from .files import stored_path
from .media.images import InputError
from .media.posters import make_poster
from .media.video import probe_video
from .models import GenerationJob, Price, ProviderAccount, Task
from .providers import get_provider, task_state
from .providers.base import (
    GenerationRequest,
    InputFile,
    ListedTask,
    ProviderError,
    RemoteProvider,
    TaskResult,
    TaskState,
    as_remote,
)

log = logging.getLogger(__name__)

# A poll handed to a worker is not handed out again for this long.
POLL_LEASE = timedelta(seconds=60)
# While an account is paused, dispatching tries again this often.
PAUSE_RETRY = timedelta(minutes=5)
# Task ids and result URLs live 24 h at the provider (provider-api.md §1.6).
# A task the provider calls unknown this long before its lifetime ends is
# taken as expired; earlier, as a hiccup to ask about again.
EXPIRY_MARGIN = timedelta(hours=1)
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
# Run time per audio second of a provider the catalog no longer knows.
DEFAULT_RUN_RATIO = 20.0
# Run times an expected run time is the median of.
HISTORY_SIZE = 20
# The poll aimed at a task's expected end comes this long after it: the
# dispatcher's tick and the workers only add lag, so a task that ends on time
# is seen ended by that one query.
END_MARGIN = 0.25
# Polls closer together than this are merged into the later one.
MIN_POLL_GAP = 0.5
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.get_fixed_timezone(0))


class SendWithdrawn(Exception):
    """The job was taken back before its paid request went out: send nothing."""


def holding_slot(provider_name: str) -> Q:
    """Tasks that occupy one of the account's slots at the provider.

    The task of a job's current attempt holds its slot from the claim on,
    while it is sent and until the provider says it ended: a task that ended
    no longer holds it, even while its result is still being copied into
    storage. A task of an earlier attempt (answered after the sweep took the
    job back) is no longer the queue's to count.
    """
    return Q(
        provider=provider_name,
        state__in=Task.ACTIVE,
        job__status__in=GenerationJob.IN_FLIGHT,
        job__task=F("pk"),
    )


def attempt_task(job: GenerationJob) -> QuerySet[Task]:
    """The task the job's current attempt opened when the queue claimed it."""
    if job.task_id is None:
        return Task.objects.none()
    return Task.objects.filter(pk=job.task_id, job=job)


def words(provider_name: str, which: Callable[[TaskState], bool]) -> list[str]:
    """The provider's own words for the states `which` selects (to query stored words)."""
    states = catalog.provider(provider_name).states
    return sorted(word for word, state in states.items() if which(state))


def state_of(provider_name: str, word: str) -> TaskState | None:
    """The state a stored provider word means; None before the provider said anything."""
    return task_state(provider_name, word)


def dispatch(*, provider_name: str, now: datetime | None = None) -> list[int]:
    """Claim queued jobs for the account's free slots. Returns their ids, to submit."""
    now = now or timezone.now()
    provider = as_remote(get_provider(provider_name))
    if provider is None:
        return []
    ProviderAccount.objects.get_or_create(provider=provider_name)
    claimed: list[int] = []
    with transaction.atomic():
        account = ProviderAccount.objects.select_for_update().get(
            provider=provider_name
        )
        if account.is_paused and account.retry_at and account.retry_at > now:
            return []
        free = (
            provider.limits.concurrency
            - Task.objects.filter(holding_slot(provider_name)).count()
        )
        if account.is_paused:
            free = min(free, 1)  # one job probes whether the account works again
        while free > 0:
            job = _next_fair(provider_name, now=now, skip=claimed)
            if job is None:
                break
            if GenerationJob.objects.filter(
                pk=job.pk, status=GenerationJob.Status.QUEUED
            ).update(
                status=GenerationJob.Status.SUBMITTED,
                started_at=now,
                heartbeat_at=now,
                submit_started_at=now,
                submit_posted_at=None,
                attempts=F("attempts") + 1,
                remote_task_id="",
                remote_status="",
                progress=0.0,
            ):
                Task.open(
                    job,
                    account=getattr(provider, "account", ""),
                    model=billing.model_name(
                        provider=provider_name, unit=Price.Unit.SECOND
                    ),
                    now=now,
                )
                claimed.append(job.pk)
                free -= 1
        if claimed:
            account.last_dispatch_at = now
            if account.is_paused:
                account.retry_at = now + PAUSE_RETRY
            account.save(update_fields=["last_dispatch_at", "retry_at"])
    return claimed


def _next_fair(
    provider_name: str, *, now: datetime, skip: list[int]
) -> GenerationJob | None:
    """The oldest job of the waiting team that was served longest ago."""
    waiting = (
        GenerationJob.objects.filter(
            provider=provider_name, status=GenerationJob.Status.QUEUED
        )
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .exclude(pk__in=skip)
    )
    teams = list(waiting.values("team").annotate(first=Min("queued_at")))
    if not teams:
        return None
    served = dict(
        GenerationJob.objects.filter(
            provider=provider_name,
            started_at__isnull=False,
            team__in=[t["team"] for t in teams],
        )
        .values("team")
        .annotate(last=Max("started_at"))
        .values_list("team", "last")
    )
    team = min(teams, key=lambda t: (served.get(t["team"]) or EPOCH, t["first"]))
    return waiting.filter(team=team["team"]).order_by("queued_at", "id").first()


def dispatch_and_submit(*, provider_name: str) -> list[int]:
    """Fill free slots and send the claimed jobs from this worker at once."""
    claimed = dispatch(provider_name=provider_name)
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
        return job  # dispatch() claims jobs for remote providers only
    # This dispatch of the job: a requeue and a new dispatch bring `attempts`
    # back to the same number, but never `submit_started_at`.
    mine = GenerationJob.objects.filter(
        pk=job.pk, attempts=job.attempts, submit_started_at=job.submit_started_at
    )
    # Claim the send: dispatch() sets heartbeat_at to submit_started_at, and the
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
        attempt_task(job).update(submit_posted_at=now)

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
    # The dispatcher only submits into a free slot, so the task normally starts
    # at once; the first poll corrects this if it is still PENDING.
    job.remote_started_at = now
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
    _resume_account(provider.name)
    reconcile.remember_task(
        job=job,
        task_id=result.task_id,
        status=result.remote_status,
        opened=_opened(job),
        started_at=now,
        # Only the job's own task is followed (see the answer that came late).
        next_poll_at=plan_next_poll(job, now=now) if saved else None,
    )
    if not saved:
        current = GenerationJob.objects.get(pk=job.pk)
        if current.status == GenerationJob.Status.CANCELED:
            # Canceled while the submit was on its way: withdraw the task again.
            log.info(
                "job %s: canceled during submit; canceling task %s",
                job.pk,
                result.task_id,
            )
            if _try_cancel(provider, result.task_id):
                reconcile.remember_task(
                    job=job, task_id=result.task_id, status=_canceled(job.provider)
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
    return attempt_task(job).filter(remote_id="").values_list("pk", flat=True).first()


def _canceled(provider_name: str) -> str:
    """The provider's word for a task it took back, whatever it is."""
    return next(iter(words(provider_name, lambda s: s == TaskState.CANCELED)), "")


def _span(lifetime: timedelta) -> str:
    hours = round(lifetime.total_seconds() / 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours > 24 else f"{hours} h"


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
        pause_account(provider_name=job.provider, code=exc.code, message=str(exc))
    # The provider made no task: the attempt's task ends here, on record.
    attempt_task(job).filter(remote_id="", state__in=Task.ACTIVE).update(
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
        not_before=now + _wait(exc, refused - 1),
    )
    log.warning(
        "job %s: submit failed (%s); queued again", job.pk, exc.code or exc.kind
    )


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
        state_of(job.provider, job.remote_status) == TaskState.SUCCEEDED
        and job.result_url
    ):
        # The task is done; an earlier copy of its result failed. Try again.
        return _store_result(job, task, provider, video_url=job.result_url)

    try:
        result = provider.poll(job.remote_task_id)
    except ProviderError as exc:
        if exc.about_account:
            pause_account(provider_name=job.provider, code=exc.code, message=str(exc))
        lifetime = catalog.provider(job.provider).task_lifetime
        if job.submit_started_at and now - job.submit_started_at > lifetime:
            lifecycle.fail(
                mine,
                code=exc.code or "lost_contact",
                message=(
                    f"The studio could not reach the provider for {_span(lifetime)}; "
                    "the task has expired there. Retry the video."
                ),
            )
            return GenerationJob.objects.get(pk=job.pk)
        this_task.update(
            next_poll_at=now + _wait(exc, task.polls), polls=F("polls") + 1
        )
        return GenerationJob.objects.get(pk=job.pk)

    _resume_account(provider.name)
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
            next_poll_at=now + _backoff(task.polls + 1), polls=F("polls") + 1
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
            job.remote_started_at = _running_since(job, result, now=now)
            fields["status"] = GenerationJob.Status.RUNNING
        else:
            job.remote_started_at = None  # waiting behind another task of the account
        fields["remote_started_at"] = job.remote_started_at
        expected = expected_remote_seconds(job)  # one history read for both
        fields["progress"] = _progress(job, now, expected=expected)
        if mine.update(**fields):
            this_task.update(
                state=result.state.value,
                remote_status=result.remote_status[:16],
                started_at=job.remote_started_at,
                provider_scheduled_at=result.scheduled_at,
                next_poll_at=plan_next_poll(job, now=now, expected=expected),
                polls=F("polls") + 1,
            )
        return GenerationJob.objects.get(pk=job.pk)

    if result.state == TaskState.SUCCEEDED:
        fields.update(result_url=result.video_url, billed_seconds=result.billed_seconds)
        # Both set, even to None, so that an earlier attempt's times never linger.
        fields["provider_scheduled_at"] = result.scheduled_at
        fields["provider_ended_at"] = result.ended_at
        fields["remote_seconds"] = _run_seconds(job, result, now=now)
        mine.update(**fields)
        # Leased while this worker copies the result; asked again if it dies.
        this_task.update(polls=F("polls") + 1, next_poll_at=now + POLL_LEASE)
        # The slot is free now: send the next job before copying this result.
        _free_slot(provider.name)
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
            not_before=now + _backoff(1),
        )
        log.warning(
            "job %s: task failed with %s; queued again", job.pk, result.error_code
        )
    else:
        lifecycle.fail(
            mine, code=result.error_code or "failed", message=result.error_message
        )
    _free_slot(provider.name)
    return GenerationJob.objects.get(pk=job.pk)


def current_task(job: GenerationJob) -> Task:
    """The task the job's attempt follows at the provider (job.remote_task_id).

    Recorded when its id came back; a record lost to an error is made again
    and becomes the job's current task.
    """
    task = Task.objects.filter(job=job, remote_id=job.remote_task_id).last()
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
                lifecycle.fail(
                    mine,
                    code=exc.code or "result_lost",
                    message=(
                        f"{exc} The provider billed the video, but it could not be saved."
                    ),
                )
            else:
                Task.objects.filter(pk=task.pk).update(
                    next_poll_at=now + _backoff(task.polls), polls=F("polls") + 1
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
    if state_of(job.provider, job.remote_status) not in (
        None,
        TaskState.PENDING,
    ) or not _try_cancel(provider, job.remote_task_id):
        return False
    canceled = _canceled(job.provider)
    reconcile.remember_task(
        job=job, task_id=job.remote_task_id, status=canceled, ended_at=timezone.now()
    )
    updated = lifecycle.cancel(
        GenerationJob.objects.filter(pk=job.pk, status__in=GenerationJob.IN_FLIGHT),
        fields={"remote_status": canceled},
    )
    _free_slot(provider.name)
    return bool(updated)


def _try_cancel(provider: RemoteProvider, task_id: str) -> bool:
    try:
        return provider.cancel(task_id)
    except ProviderError:
        return False


def _free_slot(provider_name: str) -> None:
    # Runs inside a worker: claim and send the next job right away.
    try:
        dispatch_and_submit(provider_name=provider_name)
    except Exception:  # the tick will try again within a second
        log.exception("dispatch after a finished task failed")


# -- account pause ----------------------------------------------------------------


def pause_account(*, provider_name: str, code: str, message: str) -> None:
    """Stop dispatching to an account the provider refused; admins see why."""
    now = timezone.now()
    ProviderAccount.objects.get_or_create(provider=provider_name)
    updated = ProviderAccount.objects.filter(
        provider=provider_name, paused_at__isnull=True
    ).update(
        paused_code=code[:64],
        paused_message=message,
        paused_at=now,
        retry_at=now + PAUSE_RETRY,
    )
    if updated:
        log.error("provider account %s paused: %s", provider_name, code)


def _resume_account(provider_name: str) -> int:
    return ProviderAccount.objects.filter(
        provider=provider_name, paused_at__isnull=False
    ).update(paused_code="", paused_message="", paused_at=None, retry_at=None)


def account_resume(*, provider_name: str) -> bool:
    """Site staff say the account is fixed: dispatch at once. False if not paused."""
    return _resume_account(provider_name) > 0


# -- timing -----------------------------------------------------------------------


def _backoff(failures: int) -> timedelta:
    """Exponential backoff with full jitter, 2 s to 5 min."""
    ceiling = min(2.0 * 2 ** min(failures, 8), 300.0)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _wait(exc: ProviderError, failures: int) -> timedelta:
    """The backoff, but never shorter than the provider asked (its Retry-After)."""
    return max(_backoff(failures), timedelta(seconds=exc.retry_after or 0.0))


def _running_since(
    job: GenerationJob, result: TaskResult, *, now: datetime
) -> datetime:
    """When a RUNNING task started: the provider's word, within what the studio saw.

    The studio's own guess (the submit's answer) is later than the truth by the
    submit's latency; a provider clock a little off is held between the submit
    and this answer.
    """
    started = result.scheduled_at
    if started is None:
        return job.remote_started_at or now
    if job.submit_started_at is not None:
        started = max(started, job.submit_started_at)
    return min(started, now)


def _run_seconds(
    job: GenerationJob, result: TaskResult, *, now: datetime
) -> float | None:
    """How long a finished task ran: by the provider's clock when it said so."""
    if result.scheduled_at is not None and result.ended_at is not None:
        seconds = (result.ended_at - result.scheduled_at).total_seconds()
        if seconds >= 0:
            return seconds
    if result.run_seconds is not None and result.run_seconds >= 0:
        return result.run_seconds
    if job.remote_started_at is not None:
        # Late by up to a poll interval: only a fallback (see remote_ratio).
        return (now - job.remote_started_at).total_seconds()
    return None


def remote_ratio(*, provider_name: str, resolution: str = "") -> float | None:
    """Provider seconds per second of audio: the median of recent tasks, if any.

    Run time follows the audio's length and the resolution (720P takes longer),
    so the ratio is learned per resolution. Run times measured on the
    provider's clock are preferred to ones from when a poll noticed the end
    (those run late by up to a poll interval); each lesser kind of history is
    used only while the better one is empty.
    """
    rows = list(
        GenerationJob.objects.filter(
            provider=provider_name, remote_seconds__isnull=False, audio__duration__gt=0
        )
        .order_by("-id")
        .values_list(
            "remote_seconds",
            "audio__duration",
            "resolution",
            "provider_scheduled_at",
            "provider_ended_at",
        )[: HISTORY_SIZE * 4]
    )
    for measured_only, same_resolution in (
        (True, True),
        (True, False),
        (False, True),
        (False, False),
    ):
        ratios = [
            seconds / duration
            for seconds, duration, tier, scheduled, ended in rows
            if seconds is not None
            and (not measured_only or (scheduled and ended))
            and (not same_resolution or not resolution or tier == resolution)
        ][:HISTORY_SIZE]
        if ratios:
            return median(ratios)
    return None


def expected_remote_seconds(job: GenerationJob) -> float:
    """How long the provider will run this job's task, from recent history."""
    ratio = remote_ratio(provider_name=job.provider, resolution=job.resolution)
    if ratio is None:
        ratio = first_guess(job.provider)
    return max(ratio * job.audio.duration, 1.0)


def first_guess(provider_name: str) -> float:
    """Run time per audio second before this instance has any history."""
    try:
        return catalog.provider(provider_name).run_ratio
    except catalog.UnknownChoice:
        return DEFAULT_RUN_RATIO


def plan_next_poll(
    job: GenerationJob, *, now: datetime, expected: float | None = None
) -> datetime:
    """When to ask next: at the expected end, sparsely before it, tightly after.

    The expected end is when the task started running (the provider's
    scheduled_time once a poll has brought it, else the submit) plus the
    expected run time. Counting back from it: one poll at the end, one shortly
    before it when the task is long enough to afford a query per ~10 s, and
    the documented ~15 s pace before that, so no query is wasted just short of
    the end. Past the end it asks every few seconds, easing back to the slow
    pace once the task is long overdue. A task still PENDING behind another of
    the account's tasks keeps the slow pace.
    """
    slow = float(settings.S2V_POLL_INTERVAL)
    fast = float(settings.S2V_POLL_FAST_INTERVAL)
    if job.remote_started_at is None:
        return now + timedelta(seconds=slow)
    if expected is None:
        expected = expected_remote_seconds(job)
    end = job.remote_started_at + timedelta(seconds=expected + END_MARGIN)
    remaining = (end - now).total_seconds()
    if remaining > 0:
        # Offsets before the end at which to ask: 0, `fast` (long tasks only),
        # then every `slow` before the last of those.
        last = fast if expected >= 2 * slow else 0.0
        far = int((remaining - MIN_POLL_GAP - last) // slow) if slow > 0 else 0
        if far >= 1:
            delay = remaining - (last + far * slow)
        elif remaining - last >= MIN_POLL_GAP:
            delay = remaining - last
        else:
            delay = remaining
    elif -remaining < 4 * fast:
        delay = fast
    else:
        delay = min(slow, fast + (-remaining) / 4)  # overdue: ease back to slow
    return now + timedelta(seconds=max(delay, MIN_POLL_GAP))


def _progress(job: GenerationJob, now: datetime, *, expected: float) -> float:
    if job.remote_started_at is None:
        return 0.0
    elapsed = (now - job.remote_started_at).total_seconds()
    return min(elapsed / expected, 0.97)


# -- the tick and the recovery sweep ---------------------------------------------------


def remote_providers_with_work() -> list[str]:
    names = (
        GenerationJob.objects.exclude(status__in=GenerationJob.TERMINAL)
        .values_list("provider", flat=True)
        .distinct()
    )
    return [name for name in names if is_remote(name) and _configured(name)]


def _configured(name: str) -> bool:
    """Whether this instance can reach a provider (a key removed leaves its jobs waiting)."""
    try:
        get_provider(name)
    except ImproperlyConfigured as exc:
        log.warning("provider %s has queued jobs but is not configured: %s", name, exc)
        return False
    return True


def is_remote(name: str) -> bool:
    """Whether the catalog says a provider runs tasks elsewhere (no key needed to know)."""
    try:
        return catalog.provider(name).remote
    except catalog.UnknownChoice:
        return False


def tick(*, now: datetime | None = None) -> tuple[int, int]:
    """Hand free slots and due polls to workers. Returns (submits, polls) sent."""
    now = now or timezone.now()
    submits = polls = 0
    for provider_name in remote_providers_with_work():
        for job_id in dispatch(provider_name=provider_name, now=now):
            async_task("studio.tasks.job_submit", job_id, group="provider")
            submits += 1
    due = list(
        Task.objects.filter(
            job__status__in=GenerationJob.IN_FLIGHT, next_poll_at__lte=now
        ).values_list("pk", "job_id", "next_poll_at")[:100]
    )
    for task_id, job_id, due_at in due:
        # Lease the poll so that no other tick hands it out again meanwhile.
        if Task.objects.filter(pk=task_id, next_poll_at=due_at).update(
            next_poll_at=now + POLL_LEASE
        ):
            async_task("studio.tasks.job_poll", job_id, group="provider")
            polls += 1
    return submits, polls


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
        name for name in providers if is_remote(name) and _configured(name)
    ]:
        touched += _recover_lost_submits(provider_name, now=now)
    # A leased poll whose worker died expires by itself (the tick hands out any
    # due poll); a task with no poll planned at all is asked about now.
    stale = Task.objects.filter(
        job__status__in=GenerationJob.IN_FLIGHT,
        job__remote_task_id=F("remote_id"),
        state__in=Task.ACTIVE,
        next_poll_at__isnull=True,
    ).exclude(remote_id="")
    stale_jobs = dict(stale.values_list("pk", "job_id"))
    touched += list(stale_jobs.values())
    Task.objects.filter(pk__in=stale_jobs).update(next_poll_at=now)
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
            job.recovery, job.recovery_at = GenerationJob.Recovery.CHECKING, now
            _lost(job).update(recovery=job.recovery, recovery_at=now)
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
    tasks = sorted(tasks, key=lambda t: t.submitted_at or EPOCH)

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
    return job.submit_posted_at or job.submit_started_at or EPOCH


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
        adopted = _lost(job).update(
            remote_task_id=task.task_id,
            # The listing's word only while the task runs: a poll brings the
            # rest (the result URL and billed seconds come with it).
            remote_status=task.status if task.state.active else "",
            heartbeat_at=now,
            recovery=GenerationJob.Recovery.NONE,
            recovery_at=None,
        )
    if adopted:
        reconcile.remember_task(
            job=job,
            task_id=task.task_id,
            status=task.status,
            opened=_opened(job),
            # Ask at once, also when the sweep runs with a later `now` (tests).
            next_poll_at=min(now, timezone.now()),
        )
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
        job.recovery, job.recovery_at = GenerationJob.Recovery.ADMIN, now
        _lost(job).update(recovery=job.recovery, recovery_at=now)
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
    _free_slot(job.provider)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "?"
