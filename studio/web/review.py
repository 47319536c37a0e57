"""Reviewing a video: approve or ask for changes, and comments."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from studio import services
from studio.models import Membership

from .common import _forbidden, _team_job
from .decorators import team_required
from .jobs import _after_post


@team_required
@require_POST
def job_review(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    if not services.can_review(membership):
        return _forbidden(
            request,
            membership,
            needed="reviewers and team admins",
            action="review videos",
            back=job.get_absolute_url(),
        )
    error = ""
    try:
        services.job_review(
            job=job,
            membership=membership,
            decision=request.POST.get("decision", ""),
            comment=request.POST.get("comment", ""),
        )
    except services.Rejected as exc:
        error = exc.message
        if not request.htmx:  # type: ignore[attr-defined]
            messages.error(request, error)
    response = _after_post(
        request,
        job,
        "job-review",
        {"review_error": error, "review_draft": request.POST.get("comment", "")},
    )
    if request.htmx and not error:  # type: ignore[attr-defined]
        # The share panel depends on approval: let it reload itself.
        trigger_client_event(response, "job-reviewed", {"code": str(job.code)})
    return response


@team_required
@require_POST
def job_comment(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    error = ""
    try:
        services.job_comment(
            job=job,
            user=request.user,  # type: ignore[arg-type]
            text=request.POST.get("text", ""),
        )
    except services.Rejected as exc:
        error = exc.message
        if not request.htmx:  # type: ignore[attr-defined]
            messages.error(request, error)
    return _after_post(
        request,
        job,
        "job-comments",
        {
            "comment_error": error,
            "draft": request.POST.get("text", "") if error else "",
        },
    )
