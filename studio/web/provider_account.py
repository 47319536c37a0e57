"""The shared provider account, for site staff: resume after a pause, reconcile the bill."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from studio import billing, dispatcher, reconcile, selectors
from studio.providers import get_provider

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
    if dispatcher.account_resume(provider_name=request.POST.get("provider", "")):
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
    the site's page, not a team's. POST runs a reconciliation now, inline.
    """
    if not request.user.is_staff:
        return _forbidden(
            request,
            None,
            needed="site staff",
            action="see the provider account's reconciliation",
            back=reverse("studio:gallery"),
        )
    provider = get_provider()
    if request.method == "POST":
        try:
            run = reconcile.reconcile()
        except reconcile.NothingToReconcile as exc:
            messages.info(request, str(exc))
        else:
            if run.error:
                messages.error(request, run.error)
            else:
                messages.success(request, f"Reconciled now: {reconcile.summary(run)}")
        return redirect("studio:provider-reconcile")
    last = reconcile.latest(provider_name=provider.name)
    context = {
        "remote": provider.remote,
        "provider_label": provider.label,
        "run": last,
        "summary": reconcile.summary(last) if last else "",
        # Stored as text in JSON; money is shown from Decimals.
        "findings": [
            {**f, "cost": Decimal(f["cost"]) if f["cost"] else None}
            for f in (last.findings if last else [])
        ],
        "outside": selectors.outside_billing(),
        "currency": billing.currency(),
    }
    return render(request, "studio/reconcile.html", context)
