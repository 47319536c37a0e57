"""The shared provider account, for site staff: resume after a pause, reconcile the bill."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from studio import billing, catalog, reconcile, selectors
from studio.queue import accounts

from .common import _forbidden, _safe_next


@login_required
@require_POST
def provider_resume(request: HttpRequest) -> HttpResponse:
    """Site staff say the provider account is fixed: dispatch again at once.

    The account is shared by every team, so a team admin may see the banner but
    not lift the pause.
    """
    if not request.user.is_staff:
        return _forbidden(
            request,
            None,  # the site's staff, not the team's admins, can help
            needed="site staff",
            action="resume the provider account",
            back=_safe_next(request, reverse("studio:gallery")),
        )
    if accounts.account_resume(provider_name=request.POST.get("provider", "")):
        messages.success(
            request,
            "Dispatching resumed. If the account is still refused, it pauses again.",
        )
    else:
        messages.error(
            request, "That provider account is not paused; there was nothing to resume."
        )
    return redirect(_safe_next(request, reverse("studio:gallery")))


@login_required
@require_http_methods(["GET", "POST"])
def provider_reconcile(request: HttpRequest) -> HttpResponse:
    """The provider's bill against the studio's records: site staff only.

    The account is shared by every team (and often by other tools), so this is
    the site's page, not a team's. It shows each enabled remote provider's last run;
    POST runs one provider's reconciliation (or every one's) now, inline.
    """
    if not request.user.is_staff:
        return _forbidden(
            request,
            None,
            needed="site staff",
            action="see the provider account's reconciliation",
            back=reverse("studio:gallery"),
        )
    names = reconcile.remote_provider_names()
    if request.method == "POST":
        asked = request.POST.get("provider", "")
        for name in [asked] if asked in names else names:
            run = reconcile.reconcile(provider_name=name)
            label = catalog.provider_label(name)
            if run.error:
                messages.error(request, f"{label}: {run.error}")
            else:
                messages.success(
                    request, f"Reconciled now: {reconcile.summary(run)} ({label})"
                )
        return redirect("studio:provider-reconcile")
    context = {
        "accounts": [_account(name) for name in names],
        "provider_label": catalog.provider_label(catalog.default_provider()),
        "outside": selectors.outside_billing(),
        "currency": billing.currency(),
    }
    return render(request, "studio/reconcile.html", context)


def _account(name: str) -> dict[str, object]:
    """One provider account's section of the page: its last run and what it found."""
    last = reconcile.latest(provider_name=name)
    return {
        "name": name,
        "label": catalog.provider_label(name),
        "window": reconcile.window(name),
        "run": last,
        "summary": reconcile.summary(last) if last else "",
        # Stored as text in JSON; money is shown from Decimals.
        "findings": [
            {**f, "cost": Decimal(f["cost"]) if f["cost"] else None}
            for f in (last.findings if last else [])
        ],
    }
