from __future__ import annotations

from decimal import Decimal

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils.html import format_html

from studio.models import GenerationJob

register = template.Library()


@register.filter
def clock(seconds: float | int | str | None) -> str:
    """12.4 -> "0:12"; 3725 -> "1:02:05"; anything not a number -> "–"."""
    try:
        total = round(float(seconds))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def money(amount: Decimal | None, currency: str = "") -> str:
    if amount is None or amount == "":
        return "–"
    currency = currency or settings.S2V_CURRENCY
    symbol = {"USD": "$", "CNY": "¥"}.get(currency, "")
    places = Decimal("0.01") if amount == 0 or abs(amount) >= 1 else Decimal("0.0001")
    text = f"{amount.quantize(places)}"
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


@register.filter
def percent(fraction: float | None) -> int:
    return round((fraction or 0) * 100)


@register.simple_tag
def poll_until_done(job: GenerationJob, url_name: str, every: str) -> str:
    """htmx attributes that refresh an element showing `job` until the job ends.

    The element replaces itself with the answer of `url_name`, and a finished
    job's element renders none of them, so the polling stops.
    """
    if job.is_terminal:
        return ""
    return format_html(
        'hx-get="{}" hx-trigger="every {}" hx-swap="outerHTML"',
        reverse(url_name, args=[job.code]),
        every,
    )
