from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from . import billing, catalog
from .models import Membership, ProviderAccount
from .selectors import unread_count, user_teams


def studio(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = request.membership  # type: ignore[attr-defined]
    is_admin = request.user.is_staff or bool(
        membership and membership.role == Membership.Role.ADMIN
    )
    return {
        "active_membership": membership if membership else None,
        # Evaluated only by pages that show the badge: one COUNT query.
        "unread_notifications": lambda: (
            unread_count(user=request.user, team_id=membership.team_id)
            if membership
            else 0
        ),
        "user_teams": lambda: list(user_teams(user=request.user)),
        # The default provider's catalog entry (label, remote), built only when a
        # page reads it: building a provider object on every page is not needed.
        "provider": lambda: catalog.provider(catalog.default_provider()),
        "is_team_admin": is_admin,
        "budget_warnings": (
            lambda: billing.budget_warnings(team=membership.team, user=request.user)
        )
        if membership
        else (),
        # Admins see a paused provider account on every page until it is fixed.
        "paused_accounts": (
            lambda: list(ProviderAccount.objects.filter(paused_at__isnull=False))
        )
        if is_admin
        else (),
    }
