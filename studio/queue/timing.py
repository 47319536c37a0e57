"""When a task should end and when to ask about it: run times learned from history."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from statistics import median

from django.conf import settings
from django.utils import timezone

from studio import catalog
from studio.models import GenerationJob
from studio.providers.base import ProviderError, TaskResult

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


def span(lifetime: timedelta) -> str:
    """A provider's task lifetime in words: "24 h", "7 days"."""
    hours = round(lifetime.total_seconds() / 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours > 24 else f"{hours} h"


def backoff(failures: int) -> timedelta:
    """Exponential backoff with full jitter, 2 s to 5 min."""
    ceiling = min(2.0 * 2 ** min(failures, 8), 300.0)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def retry_wait(exc: ProviderError, failures: int) -> timedelta:
    """The backoff, but never shorter than the provider asked (its Retry-After)."""
    return max(backoff(failures), timedelta(seconds=exc.retry_after or 0.0))


def running_since(job: GenerationJob, result: TaskResult, *, now: datetime) -> datetime:
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


def run_seconds(
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
    the account's tasks keeps the slow pace, and so does one whose provider
    calls back when it ends: the callback asks for the poll that sees the end,
    and the slow pace is only the backstop should a callback be lost.
    """
    slow = float(settings.S2V_POLL_INTERVAL)
    fast = float(settings.S2V_POLL_FAST_INTERVAL)
    if job.remote_started_at is None or calls_back(job.provider):
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


def calls_back(provider_name: str) -> bool:
    """Whether a provider tells the studio when a task ends: it can, and can reach us."""
    try:
        spec = catalog.provider(provider_name)
    except catalog.UnknownChoice:
        return False
    return spec.webhooks and bool(settings.S2V_PUBLIC_BASE_URL)


def progress_at(job: GenerationJob, now: datetime, *, expected: float) -> float:
    if job.remote_started_at is None:
        return 0.0
    elapsed = (now - job.remote_started_at).total_seconds()
    return min(elapsed / expected, 0.97)
