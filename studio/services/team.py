"""Team administration: members and roles, budgets, the approval rule, providers."""

from __future__ import annotations

from studio import catalog
from studio.models import Budget, Membership, Team, User

from .errors import Rejected


def budget_update(*, team: Team, user: User | None, **limits: object) -> Budget:
    """Set a team's or a member's monthly limits. A member's money stays within the team's."""
    amount = limits.get("monthly_amount")
    if amount is not None and amount < 0:  # type: ignore[operator]
        raise Rejected(
            "A budget cannot be negative. Enter 0 to stop all spending, or leave it "
            "empty for no limit.",
            code="budget",
        )
    budget, _ = Budget.objects.get_or_create(team=team, user=user)
    team_budget, _ = Budget.objects.get_or_create(team=team, user=None)
    if (
        user is not None
        and amount is not None
        and team_budget.monthly_amount is not None
        and amount > team_budget.monthly_amount  # type: ignore[operator]
    ):
        raise Rejected(
            f"A member's budget cannot exceed the team's ({team_budget.monthly_amount})."
        )
    for name, value in limits.items():
        setattr(budget, name, value)
    budget.save()
    return budget


def member_add(*, team: Team, username: str, role: str) -> Membership:
    user = User.objects.filter(username=username.strip()).first()
    if user is None:
        raise Rejected(
            f"There is no user {username!r}. Ask a site admin to create the account."
        )
    membership, created = Membership.objects.get_or_create(
        user=user, team=team, defaults={"role": role}
    )
    if not created:
        raise Rejected(f"{username} is already in {team.name}.")
    return membership


def member_set_role(*, membership: Membership, role: str) -> Membership:
    if membership.role == Membership.Role.ADMIN and role != Membership.Role.ADMIN:
        _keep_an_admin(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


def member_remove(*, membership: Membership) -> None:
    if membership.role == Membership.Role.ADMIN:
        _keep_an_admin(membership)
    Budget.objects.filter(team=membership.team, user=membership.user).delete()
    membership.delete()


def _keep_an_admin(membership: Membership) -> None:
    others = Membership.objects.filter(
        team=membership.team, role=Membership.Role.ADMIN
    ).exclude(pk=membership.pk)
    if not others.exists():
        raise Rejected(
            "A team needs at least one admin. Make someone else an admin first."
        )


def team_set_approval(*, team: Team, required: bool) -> Team:
    team.approval_required = required
    team.save(update_fields=["approval_required"])
    return team


def team_set_providers(*, team: Team, providers: list[str]) -> Team:
    """Restrict the team to these enabled providers; an empty list allows every one.

    Raises Rejected for a name the studio does not offer.
    """
    enabled = catalog.enabled_names()
    unknown = [p for p in providers if p not in enabled]
    if unknown:
        raise Rejected(
            f"{', '.join(unknown)} is not offered by this studio; choose among "
            + ", ".join(catalog.provider_label(n) for n in enabled)
            + "."
        )
    # Kept in the catalog's order, so the team's first is the studio's first.
    team.allowed_providers = [n for n in enabled if n in providers]
    team.save(update_fields=["allowed_providers"])
    return team
