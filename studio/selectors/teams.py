"""Who is in which team, and which providers a team may use."""

from __future__ import annotations

from django.db.models import QuerySet

from studio import catalog
from studio.models import Membership, Team, User


def user_teams(*, user: User) -> QuerySet[Team]:
    return Team.objects.filter(memberships__user=user).order_by("name")


def membership_for(*, user: User, team_id: int | None) -> Membership | None:
    memberships = Membership.objects.filter(user=user).select_related("team")
    if team_id is not None and (found := memberships.filter(team_id=team_id).first()):
        return found
    return memberships.order_by("team__name").first()


def team_providers(*, team: Team) -> list[str]:
    """The enabled providers the team may use, the studio's default first."""
    allowed = set(team.allowed_providers or [])
    return [n for n in catalog.enabled_names() if not allowed or n in allowed]


def team_authors(*, team: Team) -> list[str]:
    return list(
        User.objects.filter(memberships__team=team)
        .order_by("username")
        .values_list("username", flat=True)
    )


def team_admins(*, team: Team) -> list[str]:
    """Usernames of the team's admins: whom to ask for what a role does not allow."""
    return list(
        User.objects.filter(
            memberships__team=team, memberships__role=Membership.Role.ADMIN
        )
        .order_by("username")
        .values_list("username", flat=True)
    )
