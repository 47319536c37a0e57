"""Sign-in throttling on top of django-axes: who the client is, what is counted,
and the page a locked-out client sees (settings: S2V_SIGNIN_*, S2V_PROXY_COUNT).
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address: the connection's, or the one the proxies vouch for.

    Only the right-most S2V_PROXY_COUNT entries of X-Forwarded-For were written
    by the studio's own proxies; anything left of them came from the client.
    """
    remote = request.META.get("REMOTE_ADDR")
    count = settings.S2V_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [
        hop.strip()
        for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if hop.strip()
    ]
    if len(hops) < count:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote


class SignInThrottle(AxesDatabaseHandler):  # type: ignore[misc]
    """Axes' database handler with separate limits per account and per address.

    The database (SQLite or PostgreSQL) holds the counts, so every web process
    and machine shares them, whatever the cache is.
    """

    def get_failures(self, request: HttpRequest, credentials: Any = None) -> int:
        # In the order of AXES_LOCKOUT_PARAMETERS: ["username", "ip_address"].
        by_account, by_address = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        # Axes compares one count with one limit, the account's: the address's
        # count is scaled to reach that limit exactly when it reaches its own.
        account_limit = settings.S2V_SIGNIN_ACCOUNT_LIMIT
        scaled = by_address * account_limit // settings.S2V_SIGNIN_ADDRESS_LIMIT
        return max(by_account, scaled)

    def reset_user_attempts(self, request: HttpRequest, credentials: Any = None) -> int:
        # A success forgives the account's failures only: were the address's
        # forgiven too, one valid account would let its holder clear the
        # address's count between guesses at other accounts.
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return int(count)


def retry_message(retry_at: datetime, now: datetime) -> str:
    minutes = max(1, math.ceil((retry_at - now).total_seconds() / 60))
    local = timezone.localtime(retry_at)
    return (
        "Too many failed sign-ins. Try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}, "
        f"at {local:%H:%M} ({local.tzname()})."
    )


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: Any = None,
) -> HttpResponse:
    """The studio's sign-in page with the lockout as the form's error (429).

    Every refused attempt counts as a failure and restarts the cool-off, so the
    retry time is this attempt's time plus the cool-off.
    """
    now = getattr(request, "axes_attempt_time", None) or timezone.now()
    cool_off = get_cool_off(request) or timedelta(0)
    retry_at = now + cool_off
    data = request.POST if request.method == "POST" else None
    form = AuthenticationForm(request, data=data)
    response = render(
        request,
        "registration/login.html",
        {
            "form": form,
            "lockout_message": retry_message(retry_at, now),
            "next": request.POST.get("next") or request.GET.get("next", ""),
        },
        status=429,
    )
    response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response
