"""Progress and waits: queue positions, a job's progress and ETA, expected waits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median

from django.db.models import F
from django.utils import timezone

from studio import catalog
from studio.models import GenerationJob
from studio.queue.timing import first_guess, remote_ratio

# Seconds of work per second of audio when this instance has no history yet.
DEFAULT_WORK_RATIO = {"local": 0.5}
HISTORY_SIZE = 20


def work_ratio(*, provider: str, resolution: str = "") -> float:
    """Seconds of processing per second of audio, from this instance's recent jobs.

    Remote providers use the provider-measured run times the queue plans its
    polls and writes progress with, so the ETA and the progress bar agree.
    """
    if _remote(provider):
        learned = remote_ratio(provider_name=provider, resolution=resolution)
        return learned if learned is not None else first_guess(provider)
    recent = (
        GenerationJob.objects.filter(
            provider=provider,
            status=GenerationJob.Status.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .annotate(seconds=F("audio__duration"))
        .values_list("started_at", "finished_at", "seconds")[:HISTORY_SIZE]
    )
    ratios = [
        (finished - started).total_seconds() / seconds
        for started, finished, seconds in recent
        if seconds and started and finished
    ]
    return median(ratios) if ratios else DEFAULT_WORK_RATIO.get(provider, 1.0)


@dataclass(frozen=True, slots=True)
class JobProgress:
    position: int | None  # 1 = next to start
    eta_seconds: float | None  # until the video is ready
    fraction: float  # 0..1, measured or estimated


def queue_positions(*, provider: str) -> dict[int, int]:
    """Every queued job's place in line for an provider, in one query."""
    queued = (
        GenerationJob.objects.filter(
            provider=provider, status=GenerationJob.Status.QUEUED
        )
        .order_by("queued_at", "id")
        .values_list("id", flat=True)
    )
    return {job_id: place for place, job_id in enumerate(queued, start=1)}


def job_progress(*, job: GenerationJob) -> JobProgress:
    """Where a job stands: its place in line, a time estimate and a progress fraction."""
    if job.is_terminal:
        return JobProgress(
            position=None,
            eta_seconds=0.0,
            fraction=1.0 if job.status == GenerationJob.Status.SUCCEEDED else 0.0,
        )
    ratio = work_ratio(provider=job.provider, resolution=job.resolution)
    own = job.audio.duration * ratio
    if job.is_in_flight:
        fraction = job.progress
        if fraction <= 0 and job.started_at:
            elapsed = (timezone.now() - job.started_at).total_seconds()
            fraction = min(elapsed / own, 0.95) if own else 0.0
        return JobProgress(
            position=None, eta_seconds=max(own * (1 - fraction), 0.0), fraction=fraction
        )

    waiting, wait = _queue_ahead(
        provider=job.provider,
        ratio=ratio,
        before=(job.queued_at, job.pk),
    )
    return JobProgress(position=waiting + 1, eta_seconds=wait + own, fraction=0.0)


def _remote(provider: str) -> bool:
    try:
        return catalog.provider(provider).remote
    except catalog.UnknownChoice:
        return False


def _slots(provider: str) -> int:
    try:
        return max(catalog.provider(provider).concurrency, 1)
    except catalog.UnknownChoice:
        return 1


def _queue_ahead(
    *, provider: str, ratio: float, before: tuple[datetime, int] | None = None
) -> tuple[int, float]:
    """Jobs waiting for a provider (before a queued job, or all), and seconds until a slot.

    The work left of the waiting and running jobs, shared by the account's
    slots, at this instance's measured seconds of work per second of audio.
    """
    rows = GenerationJob.objects.filter(
        provider=provider,
        status__in=[GenerationJob.Status.QUEUED, *GenerationJob.IN_FLIGHT],
    )
    if before is not None:
        rows = rows.filter(queued_at__lte=before[0]).exclude(pk=before[1])
    ahead = list(
        rows.values_list("status", "audio__duration", "progress", "queued_at", "id")
    )
    waiting = [
        row
        for row in ahead
        if row[0] == GenerationJob.Status.QUEUED
        and (before is None or (row[3], row[4]) < before)
    ]
    running = [row for row in ahead if row[0] in GenerationJob.IN_FLIGHT]
    work = sum(d * ratio for _, d, _, _, _ in waiting)
    work += sum(d * ratio * (1 - p) for _, d, p, _, _ in running)
    return len(waiting), work / _slots(provider)


def expected_wait(*, provider: str, resolution: str, audio_seconds: float) -> float:
    """Seconds until a video submitted now would be ready: the queue, then its own run."""
    ratio = work_ratio(provider=provider, resolution=resolution)
    _, wait = _queue_ahead(provider=provider, ratio=ratio)
    return wait + audio_seconds * ratio


def queue_positions_all() -> dict[int, int]:
    """Every queued job's place in its provider's line, for every enabled provider."""
    positions: dict[int, int] = {}
    for name in catalog.enabled_names():
        positions |= queue_positions(provider=name)
    return positions
