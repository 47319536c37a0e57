"""An account's slots: which tasks hold them, and claiming queued jobs for free ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Max, Min, Q, QuerySet
from django.utils import timezone

from studio import billing, catalog, reconcile
from studio.models import GenerationJob, Price, ProviderAccount, Task
from studio.providers import get_provider, task_state
from studio.providers.base import TaskState, as_remote

from . import accounts, timing

log = logging.getLogger(__name__)


def holding_slot(provider_name: str) -> Q:
    """The tasks the queue counts against the account's slots.

    The task of a job's current attempt holds its slot from the claim on,
    while it is sent and until the provider says it ended: a task that ended
    no longer holds it, even while its result is still being copied into
    storage. A task of an earlier attempt (answered after the sweep took the
    job back) may still run at the provider, but the queue no longer follows
    it and does not count it: at worst the next task waits there as PENDING.
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


def follow(
    job: GenerationJob,
    *,
    task_id: str,
    word: str,
    now: datetime,
    next_poll_at: datetime,
) -> None:
    """The attempt's task takes the id the provider gave, and is asked about next then.

    Called in the transaction that saves the id on the job, so a crash never
    leaves a job with an id whose task is not followed. A job without an
    opened task (made before tasks held slots) gets its record made.
    """
    fields: dict[str, object] = {
        "remote_id": task_id,
        "remote_status": word[:16],
        "started_at": now,
        "next_poll_at": next_poll_at,
    }
    state = state_of(job.provider, word)
    if state is not None:
        fields["state"] = state.value
    if not attempt_task(job).filter(remote_id__in=("", task_id)).update(**fields):
        reconcile.remember_task(
            job=job,
            task_id=task_id,
            status=word,
            started_at=now,
            next_poll_at=next_poll_at,
        )


def words(provider_name: str, which: Callable[[TaskState], bool]) -> list[str]:
    """The provider's own words for the states `which` selects (to query stored words)."""
    states = catalog.provider(provider_name).states
    return sorted(word for word, state in states.items() if which(state))


def state_of(provider_name: str, word: str) -> TaskState | None:
    """The state a stored provider word means; None before the provider said anything."""
    return task_state(provider_name, word)


def canceled_word(provider_name: str) -> str:
    """The provider's word for a task it took back, whatever it is."""
    return next(iter(words(provider_name, lambda s: s == TaskState.CANCELED)), "")


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
                account.retry_at = now + accounts.PAUSE_RETRY
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
    team = min(teams, key=lambda t: (served.get(t["team"]) or timing.EPOCH, t["first"]))
    return waiting.filter(team=team["team"]).order_by("queued_at", "id").first()


def remote_providers_with_work() -> list[str]:
    names = (
        GenerationJob.objects.exclude(status__in=GenerationJob.TERMINAL)
        .values_list("provider", flat=True)
        .distinct()
    )
    return [name for name in names if is_remote(name) and configured(name)]


def configured(name: str) -> bool:
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
