"""Non-trivial reads: the gallery, queue positions and time estimates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median

from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import billing
from .engine import get_engine
from .models import GenerationJob, LedgerEntry, Membership, Team, User

# Seconds of work per second of audio when this instance has no history yet.
DEFAULT_WORK_RATIO = {"local": 0.5}
HISTORY_SIZE = 20


def user_teams(*, user: User) -> QuerySet[Team]:
    return Team.objects.filter(memberships__user=user).order_by("name")


def membership_for(*, user: User, team_id: int | None) -> Membership | None:
    memberships = Membership.objects.filter(user=user).select_related("team")
    if team_id is not None and (found := memberships.filter(team_id=team_id).first()):
        return found
    return memberships.order_by("team__name").first()


@dataclass(frozen=True, slots=True)
class GalleryFilters:
    author: str = ""
    status: str = ""
    resolution: str = ""

    def as_query(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("author", self.author),
                ("status", self.status),
                ("resolution", self.resolution),
            )
            if v
        }


def gallery_jobs(*, team: Team, filters: GalleryFilters) -> QuerySet[GenerationJob]:
    jobs = (
        GenerationJob.objects.filter(team=team)
        .select_related("created_by", "audio")
        .order_by("-queued_at", "-id")
    )
    if filters.author:
        jobs = jobs.filter(created_by__username=filters.author)
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.resolution:
        jobs = jobs.filter(resolution=filters.resolution)
    return jobs


def team_authors(*, team: Team) -> list[str]:
    return list(
        User.objects.filter(memberships__team=team)
        .order_by("username")
        .values_list("username", flat=True)
    )


def work_ratio(*, engine: str) -> float:
    """Seconds of processing per second of audio, from this instance's recent jobs."""
    recent = (
        GenerationJob.objects.filter(
            engine=engine,
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
        if seconds
    ]
    return median(ratios) if ratios else DEFAULT_WORK_RATIO.get(engine, 1.0)


@dataclass(frozen=True, slots=True)
class JobProgress:
    position: int | None  # 1 = next to start
    eta_seconds: float | None  # until the video is ready
    fraction: float  # 0..1, measured or estimated


def queue_positions(*, engine: str) -> dict[int, int]:
    """Every queued job's place in line for an engine, in one query."""
    queued = (
        GenerationJob.objects.filter(engine=engine, status=GenerationJob.Status.QUEUED)
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
    ratio = work_ratio(engine=job.engine)
    own = job.audio.duration * ratio
    if job.is_in_flight:
        fraction = job.progress
        if fraction <= 0 and job.started_at:
            elapsed = (timezone.now() - job.started_at).total_seconds()
            fraction = min(elapsed / own, 0.95) if own else 0.0
        return JobProgress(
            position=None, eta_seconds=max(own * (1 - fraction), 0.0), fraction=fraction
        )

    ahead = list(
        GenerationJob.objects.filter(
            engine=job.engine,
            status__in=[GenerationJob.Status.QUEUED, *GenerationJob.IN_FLIGHT],
        )
        .filter(queued_at__lte=job.queued_at)
        .exclude(pk=job.pk)
        .values_list("status", "audio__duration", "progress", "queued_at", "id")
    )
    waiting = [
        row
        for row in ahead
        if row[0] == GenerationJob.Status.QUEUED
        and (row[3], row[4]) < (job.queued_at, job.pk)
    ]
    running = [row for row in ahead if row[0] in GenerationJob.IN_FLIGHT]
    work = sum(d * ratio for _, d, _, _, _ in waiting)
    work += sum(d * ratio * (1 - p) for _, d, p, _, _ in running)
    slots = max(get_engine(job.engine).limits.concurrency, 1)
    return JobProgress(
        position=len(waiting) + 1, eta_seconds=work / slots + own, fraction=0.0
    )


# -- spend ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendRow:
    label: str
    amount: Decimal
    seconds: Decimal
    count: int


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-11' -> the month's first moment and the next month's, in local time."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = timezone.make_aware(datetime(year, number, 1))
    except (ValueError, TypeError):
        start = billing.month_start()
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def ledger(*, team: Team, start: datetime, end: datetime) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(team=team, created_at__gte=start, created_at__lt=end)
        .select_related("user", "job")
        .order_by("created_at", "id")
    )


def spend_by(*, team: Team, start: datetime, end: datetime, by: str) -> list[SpendRow]:
    """Billed spend grouped by user, day, resolution, provider or kind."""
    billed = LedgerEntry.objects.filter(
        team=team, billed=True, created_at__gte=start, created_at__lt=end
    )
    key = {
        "user": "user__username",
        "day": "day",
        "resolution": "resolution",
        "engine": "provider",
        "kind": "kind",
    }[by]
    if by == "day":
        billed = billed.annotate(day=TruncDate("created_at"))
    rows = (
        billed.values(key)
        .annotate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
        .order_by(key)
    )
    return [
        SpendRow(
            label=str(row[key] or "–"),
            amount=row["amount"] or Decimal(0),
            seconds=row["seconds"] or Decimal(0),
            count=row["count"],
        )
        for row in rows
    ]


def spend_per_team(*, start: datetime, end: datetime) -> list[SpendRow]:
    rows = (
        LedgerEntry.objects.filter(
            billed=True, created_at__gte=start, created_at__lt=end
        )
        .values("team__name")
        .annotate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
        .order_by("team__name")
    )
    return [
        SpendRow(
            row["team__name"],
            row["amount"] or Decimal(0),
            row["seconds"] or Decimal(0),
            row["count"],
        )
        for row in rows
    ]
