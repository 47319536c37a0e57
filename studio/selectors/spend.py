"""Money read back: month bounds, spend by member, tier, provider, day and team, the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from studio import billing, catalog
from studio.models import GenerationJob, LedgerEntry, Team

from .gallery import DATE_MAX, DATE_MIN


@dataclass(frozen=True, slots=True)
class SpendRow:
    label: str
    amount: Decimal
    seconds: Decimal
    count: int


class BadMonth(ValueError):
    """A month query parameter that cannot be used. The message says why."""


def jobs_marked_for_admin(*, team: Team | None) -> QuerySet[GenerationJob]:
    """Jobs whose submit answer was lost and that nobody could settle (all teams: None)."""
    jobs = GenerationJob.objects.filter(recovery=GenerationJob.Recovery.ADMIN)
    if team is not None:
        jobs = jobs.filter(team=team)
    return jobs.select_related("team", "created_by").order_by("-queued_at")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-11' -> the month's first moment and the next month's, in local time.

    An empty value means this month. Raises BadMonth for anything that is not
    a month like 2026-11 between DATE_MIN and DATE_MAX.
    """
    month = month.strip()
    if not month:
        start = billing.month_start()
    else:
        try:
            year, number = (int(part) for part in month.split("-"))
            first = date(year, number, 1)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadMonth(f"{month[:20]} is not a month like 2026-01.") from exc
        if not DATE_MIN <= first <= DATE_MAX:
            raise BadMonth(
                f"{month} is out of range. Months must be between "
                f"{DATE_MIN:%Y-%m} and {DATE_MAX:%Y-%m}."
            )
        start = timezone.make_aware(datetime.combine(first, time.min))
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def ledger(*, team: Team, start: datetime, end: datetime) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(team=team, created_at__gte=start, created_at__lt=end)
        .select_related("user", "job")
        .order_by("created_at", "id")
    )


def spent_for_nothing(
    *, team: Team, start: datetime, end: datetime
) -> QuerySet[LedgerEntry]:
    """Billed generations whose video could not be saved: money to dispute."""
    return (
        LedgerEntry.objects.filter(
            team=team,
            kind=LedgerEntry.Kind.GENERATION,
            billed=True,
            job__status=GenerationJob.Status.FAILED,
            created_at__gte=start,
            created_at__lt=end,
        )
        .select_related("job")
        .order_by("created_at", "id")
    )


def outside_billing(*, days: int = 31) -> SpendRow:
    """What the reconciliation recorded as billed outside the studio lately."""
    totals = LedgerEntry.objects.filter(
        kind=LedgerEntry.Kind.OUTSIDE,
        created_at__gte=timezone.now() - timedelta(days=days),
    ).aggregate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
    return SpendRow(
        label=f"last {days} days",
        amount=totals["amount"] or Decimal(0),
        seconds=totals["seconds"] or Decimal(0),
        count=totals["count"],
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
        "provider": "provider",
        "kind": "kind",
    }[by]
    if by == "day":
        billed = billed.annotate(day=TruncDate("created_at"))
    rows = (
        billed.values(key)
        .annotate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
        .order_by(key)
    )
    # Providers by their catalog label, as every other page names them.
    name = catalog.provider_label if by == "provider" else str
    return [
        SpendRow(
            label=name(row[key]) if row[key] else "–",
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
            # Lines of no team: another application's tasks on the same key.
            row["team__name"] or "Outside the studio",
            row["amount"] or Decimal(0),
            row["seconds"] or Decimal(0),
            row["count"],
        )
        for row in rows
    ]
