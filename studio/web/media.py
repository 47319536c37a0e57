"""Stored files, served only to members of the owning team (and signed input links)."""

from __future__ import annotations

from uuid import UUID

from django.core import signing
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from studio.formats import POSTER_FORMAT, VIDEO_FORMAT
from studio.media.serving import input_format, serve_file
from studio.models import (
    AudioClip,
    GenerationJob,
    InputFile,
    Membership,
    Portrait,
    VideoClip,
)
from studio.providers.staging import PUBLIC_LINK_MAX_AGE, PUBLIC_LINK_SALT

from .common import _team_job
from .decorators import team_required


@team_required
@require_GET
def portrait_file(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    return _input_file(request, Portrait, membership, code)


@team_required
@require_GET
def audio_file(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    return _input_file(request, AudioClip, membership, code)


def _input_file(
    request: HttpRequest, kind: type[InputFile], membership: Membership, code: UUID
) -> HttpResponseBase:
    upload = get_object_or_404(kind, code=code, team=membership.team)
    return serve_file(request, upload.file.name, fmt=upload.format)


# A reference video's stored files: the video itself, its poster, its preview.
_VIDEO_PARTS = {"file", "poster", "preview"}


@team_required
@require_GET
def video_file(
    request: HttpRequest, membership: Membership, code: UUID, part: str = "file"
) -> HttpResponseBase:
    clip = get_object_or_404(VideoClip, code=code, team=membership.team)
    if part not in _VIDEO_PARTS:
        raise Http404("No such file.")
    fmt = {"file": clip.format, "poster": POSTER_FORMAT}.get(part, VIDEO_FORMAT)
    return serve_file(request, getattr(clip, part).name, fmt=fmt)


@team_required
@require_GET
def job_video(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    job = _team_job(membership, code)
    if not job.video:
        raise Http404("This job has no video yet.")
    name = _download_name(job) if "download" in request.GET else None
    return serve_file(request, job.video.name, fmt=VIDEO_FORMAT, download_as=name)


def _download_name(job: GenerationJob) -> str:
    safe_title = "".join(
        c for c in job.display_title[:60] if c.isalnum() or c in " -_."
    )
    return f"{safe_title.strip() or 'video'} {job.resolution}.mp4"


@team_required
@require_GET
def job_poster(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    job = _team_job(membership, code)
    if not job.poster:
        raise Http404("This job has no poster yet.")
    return serve_file(request, job.poster.name, fmt=POSTER_FORMAT)


@require_GET
def public_input(request: HttpRequest, token: str) -> HttpResponseBase:
    """An input file for the provider to fetch (S2V_INPUT_URLS=public).

    The link is signed and expires; it names one stored file and nothing else.
    """
    try:
        name = signing.loads(token, salt=PUBLIC_LINK_SALT, max_age=PUBLIC_LINK_MAX_AGE)
    except signing.BadSignature:
        raise Http404("This link is invalid or has expired.") from None
    if not isinstance(name, str) or not default_storage.exists(name):
        raise Http404("This file is gone.")
    return serve_file(request, name, fmt=input_format(name))
