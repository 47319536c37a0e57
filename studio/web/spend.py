"""Money for team admins: the month's spend by member, tier, provider and day, the ledger CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import timezone as datetime_timezone
from decimal import Decimal
from typing import Any

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from studio import billing, selectors
from studio.models import Membership

from .decorators import admin_required


@admin_required
@require_GET
def spend(request: HttpRequest, membership: Membership) -> HttpResponse:
    team = membership.team
    month_error = ""
    try:
        start, end = selectors.month_bounds(request.GET.get("month", ""))
    except selectors.BadMonth as exc:
        month_error = f"{exc} Showing this month instead."
        start, end = selectors.month_bounds("")
    days = selectors.spend_by(team=team, start=start, end=end, by="day")
    previous = start - timedelta(days=1)
    context = {
        "month": start.strftime("%Y-%m"),
        "month_error": month_error,
        # No links out of the supported range: they could only show an error.
        "previous": previous.strftime("%Y-%m")
        if previous.date() >= selectors.DATE_MIN
        else "",
        "next": end.strftime("%Y-%m") if end.date() <= selectors.DATE_MAX else "",
        "tables": [
            (title, selectors.spend_by(team=team, start=start, end=end, by=by))
            for title, by in (
                ("By member", "user"),
                ("By resolution", "resolution"),
                ("By provider", "provider"),
                ("By kind", "kind"),
            )
        ],
        "days": days,
        "wasted": selectors.spent_for_nothing(team=team, start=start, end=end),
        "chart": _daily_chart(days, start, end),
        "usage": billing.usage(team=team),
        "teams": selectors.spend_per_team(start=start, end=end)
        if request.user.is_staff
        else [],
        "currency": billing.currency(),
        # Site staff see every team's, as they hold the provider account's bill.
        "marked": selectors.jobs_marked_for_admin(
            team=None if request.user.is_staff else team
        )[:50],
    }
    return render(request, "studio/spend.html", context)


def _daily_chart(
    days: list[selectors.SpendRow], start: datetime, end: datetime
) -> dict[str, Any]:
    """Bars for a server-rendered SVG: one per day of the month, scaled to the highest."""
    by_day = {row.label: row.amount for row in days}
    count = (end - start).days
    highest = max(by_day.values(), default=Decimal(0)) or Decimal(1)
    width, height, gap = 600, 160, 2
    bar = (width - gap * count) / count
    bars = []
    for index in range(count):
        day = (start + timedelta(days=index)).date()
        amount = by_day.get(str(day), Decimal(0))
        h = float(amount / highest) * (height - 20)
        bars.append(
            {
                "x": round(index * (bar + gap), 1),
                "y": round(height - 14 - h, 1),
                "w": round(bar, 1),
                "h": round(h, 1),
                "day": day,
                "amount": amount,
            }
        )
    return {"width": width, "height": height, "bars": bars, "highest": highest}


@admin_required
@require_GET
def ledger_csv(request: HttpRequest, membership: Membership) -> HttpResponseBase:
    """The month's ledger, one row per entry, to match line by line with the provider's bill."""
    try:
        start, end = selectors.month_bounds(request.GET.get("month", ""))
    except selectors.BadMonth as exc:
        # A download has no page to show the message on; the browser shows this.
        return HttpResponseBadRequest(
            f"{exc}\n", content_type="text/plain; charset=utf-8"
        )
    entries = selectors.ledger(team=membership.team, start=start, end=end)
    provider_tz = datetime_timezone(timedelta(hours=8))

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    header = [
        "time_utc",
        "time_utc8",
        "team",
        "user",
        "job",
        "kind",
        "provider",
        "model",
        "resolution",
        "unit",
        "quantity",
        "unit_price",
        "amount",
        "currency",
        "billed",
        "reason",
        "remote_id",
    ]

    def rows() -> Iterator[str]:
        yield writer.writerow(header)
        for e in entries.iterator(chunk_size=500):
            yield writer.writerow(
                [
                    e.created_at.astimezone(UTC).isoformat(timespec="seconds"),
                    e.created_at.astimezone(provider_tz).strftime("%Y-%m-%d %H:%M:%S"),
                    membership.team.slug,
                    e.user.username if e.user else "",
                    str(e.job.code) if e.job else "",
                    e.kind,
                    e.provider,
                    e.model,
                    e.resolution,
                    e.unit,
                    e.quantity,
                    e.unit_price,
                    e.amount,
                    e.currency,
                    "yes" if e.billed else "no",
                    e.reason,
                    e.remote_id,
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    name = f"s2v-ledger-{membership.team.slug}-{start:%Y-%m}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
