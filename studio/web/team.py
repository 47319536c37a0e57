"""Team administration: members and roles, providers, approval rule, budgets."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from studio import billing, services
from studio.forms import BudgetForm, MemberAddForm, TeamBudgetForm, TeamProvidersForm
from studio.models import Budget, Membership, Team

from .decorators import admin_required


def _team_member(team: Team, member_id: str) -> Membership:
    """A membership of this team by id; 404 for anything else, garbage included."""
    if not member_id.isdigit():
        raise Http404("No such member.")
    return get_object_or_404(Membership, team=team, pk=int(member_id))


@admin_required
@require_http_methods(["GET", "POST"])
def team_settings(request: HttpRequest, membership: Membership) -> HttpResponse:
    team = membership.team
    team_budget, _ = Budget.objects.get_or_create(team=team, user=None)
    team_form = TeamBudgetForm(instance=team_budget, prefix="team")
    add_form = MemberAddForm(prefix="add")
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "approval":
                services.team_set_approval(
                    team=team, required=request.POST.get("approval_required") == "on"
                )
                messages.success(request, "Team settings saved.")
                return redirect("studio:team-settings")
            if action == "providers":
                providers_form = TeamProvidersForm(request.POST, team=team)
                if providers_form.is_valid():
                    services.team_set_providers(
                        team=team, providers=providers_form.cleaned_data["providers"]
                    )
                    messages.success(request, "Providers saved.")
                else:
                    messages.error(
                        request,
                        "The providers were not saved. "
                        + _form_errors_text(providers_form),
                    )
                return redirect("studio:team-settings")
            if action == "team-budget":
                team_form = TeamBudgetForm(
                    request.POST, instance=team_budget, prefix="team"
                )
                if team_form.is_valid():
                    services.budget_update(
                        team=team, user=None, **team_form.cleaned_data
                    )
                    messages.success(request, "Team budget saved.")
                    return redirect("studio:team-settings")
                messages.error(
                    request,
                    "The team budget was not saved. " + _form_errors_text(team_form),
                )
            elif action == "member-budget":
                member = _team_member(team, request.POST.get("member", ""))
                form = BudgetForm(request.POST, prefix=f"m{member.pk}")
                if form.is_valid():
                    services.budget_update(
                        team=team, user=member.user, **form.cleaned_data
                    )
                    messages.success(request, f"Budget of {member.user} saved.")
                else:
                    messages.error(
                        request,
                        f"The budget of {member.user} was not saved. "
                        + _form_errors_text(form),
                    )
                return redirect("studio:team-settings")
            elif action == "add-member":
                add_form = MemberAddForm(request.POST, prefix="add")
                if add_form.is_valid():
                    services.member_add(team=team, **add_form.cleaned_data)
                    messages.success(
                        request, f"{add_form.cleaned_data['username']} added."
                    )
                    return redirect("studio:team-settings")
                messages.error(
                    request, "Nobody was added. " + _form_errors_text(add_form)
                )
            elif action in ("set-role", "remove-member"):
                member = _team_member(team, request.POST.get("member", ""))
                if action == "remove-member":
                    services.member_remove(membership=member)
                    messages.success(
                        request, f"{member.user} removed from {team.name}."
                    )
                elif request.POST.get("role") in Membership.Role.values:
                    services.member_set_role(
                        membership=member, role=request.POST["role"]
                    )
                    messages.success(
                        request,
                        f"{member.user} is now {member.get_role_display().lower()}.",
                    )
                else:
                    messages.error(
                        request,
                        f"The role of {member.user} was not changed: choose "
                        + _role_names()
                        + ".",
                    )
                return redirect("studio:team-settings")
            else:
                # A stale page or a hand-made request: say so, never do nothing.
                messages.error(
                    request,
                    "That form is not one this page knows; nothing was changed. "
                    "Reload the page and try again.",
                )
                return redirect("studio:team-settings")
        except services.Rejected as exc:
            messages.error(request, exc.message)
            return redirect("studio:team-settings")

    members = list(
        Membership.objects.filter(team=team)
        .select_related("user")
        .order_by("user__username")
    )
    budgets = {
        b.user_id: b for b in Budget.objects.filter(team=team, user__isnull=False)
    }
    rows = []
    for member in members:
        budget = budgets.get(member.user_id) or Budget(team=team, user=member.user)
        rows.append(
            {
                "membership": member,
                "form": BudgetForm(instance=budget, prefix=f"m{member.pk}"),
                "usage": billing.usage(team=team, user=member.user),
            }
        )
    return render(
        request,
        "studio/team_settings.html",
        {
            "team": team,
            "team_form": team_form,
            "providers_form": TeamProvidersForm(team=team),
            "team_usage": billing.usage(team=team),
            "rows": rows,
            "add_form": add_form,
            "roles": Membership.Role.choices,
        },
    )


def _form_errors_text(form: forms.BaseForm) -> str:
    """A form's errors as one sentence per field, named by its label."""
    parts = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else None
        text = " ".join(str(e) for e in errors)
        parts.append(f"{label or name.replace('_', ' ').capitalize()}: {text}")
    return " ".join(parts)


def _role_names() -> str:
    return ", ".join(str(label).lower() for _, label in Membership.Role.choices)
