"""What every page shares: the active team's objects, the studio's 403, safe redirects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect

from studio import selectors, services
from studio.alerts import htmx_alert
from studio.models import GenerationJob, Membership


def _team_job(membership: Membership, code: UUID) -> GenerationJob:
    # Anything outside the active team answers 404, never 403: no existence leaks.
    return get_object_or_404(
        GenerationJob.objects.select_related("portrait", "audio", "created_by"),
        code=code,
        team=membership.team,
    )


def _team_object(model: type[Any], membership: Membership, code: str) -> Any:
    try:
        return model.objects.filter(team=membership.team, code=UUID(code)).first()
    except ValueError:
        return None


JOB_CHANGERS = "the video's author, a reviewer or a team admin"


def _may_change(
    request: HttpRequest, membership: Membership, job: GenerationJob
) -> bool:
    return request.user.is_staff or services.can_change_job(
        membership=membership, job=job
    )


def _refuse_change(
    request: HttpRequest, membership: Membership, job: GenerationJob, *, action: str
) -> HttpResponse | None:
    """The studio's 403 when this member may not change the job, else None."""
    if _may_change(request, membership, job):
        return None
    return _forbidden(
        request,
        membership,
        needed=JOB_CHANGERS,
        action=action,
        back=job.get_absolute_url(),
    )


def _forbidden(
    request: HttpRequest,
    membership: Membership | None,
    *,
    needed: str,
    action: str,
    back: str = "",
) -> HttpResponse:
    """The studio's 403: which role is needed and whom to ask, with no traceback.

    Returned rather than raised: Django logs a raised PermissionDenied with its
    traceback, and a member pressing a button is not an error of the site.
    """
    admins = selectors.team_admins(team=membership.team) if membership else []
    context = {
        "needed": needed,
        "action": action,
        "team": membership.team if membership else None,
        "admins": admins,
        "back": back,
    }
    if request.htmx:  # type: ignore[attr-defined]
        # htmx 2 swaps no 4xx answer: say it in the page's alert area instead,
        # as the upload limit does.
        message = f"Only {needed} can {action}. Nothing was changed."
        if admins:
            message += " Ask " + ", ".join(admins) + " for another role."
        return htmx_alert(request, message)
    return render(request, "403.html", context, status=403)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A friendly page instead of Django's technical 403."""
    return render(request, "studio/csrf_failure.html", status=403)


def _back_to(request: HttpRequest, url: str) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _safe_next(request: HttpRequest, default: str) -> str:
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}
    ):
        return next_url
    return default
