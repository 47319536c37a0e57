"""Share links: create and revoke them, and the public pages they open."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from studio import selectors, services
from studio.formats import POSTER_FORMAT, VIDEO_FORMAT
from studio.media.serving import serve_file
from studio.models import Membership, ShareLink

from .common import _refuse_change, _team_job
from .decorators import team_required
from .jobs import _after_post
from .media import _download_name


@team_required
@require_POST
def share_create(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    job.team = membership.team
    error = ""
    try:
        days = int(request.POST.get("days", ""))
    except ValueError:
        days = 0
    try:
        services.share_create(job=job, user=request.user, days=days)  # type: ignore[arg-type]
    except services.Rejected as exc:
        error = exc.message
        if not request.htmx:  # type: ignore[attr-defined]
            messages.error(request, error)
    return _after_post(request, job, "job-shares", {"share_error": error})


@team_required
@require_POST
def share_revoke(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    share = get_object_or_404(
        ShareLink.objects.select_related("job"), code=code, job__team=membership.team
    )
    if refused := _refuse_change(
        request, membership, share.job, action="revoke this share link"
    ):
        return refused
    services.share_revoke(share=share, user=request.user)  # type: ignore[arg-type]
    return _after_post(request, share.job, "job-shares")


def _public_share(token: str) -> ShareLink:
    code = services.share_code(token)
    share = selectors.share_for_public(code=code) if code else None
    if share is None:
        raise Http404("This link is invalid, has expired or was revoked.")
    return share


def _private_to_robots(response: HttpResponseBase) -> HttpResponseBase:
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    # Revalidate every time, so a revoked link stops working at once.
    response["Cache-Control"] = "private, no-cache"
    return response


@require_GET
def share_page(request: HttpRequest, token: str) -> HttpResponseBase:
    """A shared video, for anyone with the link: that video and nothing else."""
    share = _public_share(token)
    return _private_to_robots(
        render(
            request,
            "studio/share_page.html",
            {"share": share, "job": share.job, "token": token},
        )
    )


@require_GET
def share_video(request: HttpRequest, token: str) -> HttpResponseBase:
    job = _public_share(token).job
    name = _download_name(job) if "download" in request.GET else None
    return _private_to_robots(
        serve_file(request, job.video.name, fmt=VIDEO_FORMAT, download_as=name)
    )


@require_GET
def share_poster(request: HttpRequest, token: str) -> HttpResponseBase:
    job = _public_share(token).job
    if not job.poster:
        raise Http404
    return _private_to_robots(serve_file(request, job.poster.name, fmt=POSTER_FORMAT))
