"""The notification inbox and its badge."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from studio import notifications, selectors
from studio.models import Membership

from .decorators import team_required


@team_required
@require_GET
def notification_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    user = request.user
    notices = selectors.notifications_for(user=user, team=membership.team)  # type: ignore[arg-type]
    # Seeing the list is reading it; the page still marks what was new.
    notifications.mark_all_read(user=user, team_id=membership.team_id)  # type: ignore[arg-type]
    return render(
        request,
        "studio/notifications.html",
        {"notices": notices, "unread_notifications": 0},
    )


@team_required
@require_GET
def notification_badge(request: HttpRequest, membership: Membership) -> HttpResponse:
    count = selectors.unread_count(user=request.user, team_id=membership.team_id)  # type: ignore[arg-type]
    return render(
        request, "base.html#notification-badge", {"unread_notifications": count}
    )
