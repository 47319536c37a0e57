"""A user's notifications in a team, and the unread count."""

from __future__ import annotations

from studio.models import Notification, Team, User

NOTIFICATIONS_SHOWN = 50


def notifications_for(*, user: User, team: Team) -> list[Notification]:
    return list(
        Notification.objects.filter(user=user, team=team).select_related(
            "job", "actor"
        )[:NOTIFICATIONS_SHOWN]
    )


def unread_count(*, user: User, team_id: int) -> int:
    return Notification.objects.filter(
        user=user, team_id=team_id, read_at__isnull=True
    ).count()
