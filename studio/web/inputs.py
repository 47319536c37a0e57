"""Uploads on the new-video form: the inline portrait and audio checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files import File
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from studio import catalog, selectors, services
from studio.forms import UploadForm
from studio.models import AudioClip, Membership, Portrait

from .common import _team_object
from .decorators import team_required
from .generate import _chosen, _generate_ready, _page_limits


def _audio_ok(membership: Membership, code: str, provider: str) -> bool:
    clip = _team_object(AudioClip, membership, code)
    return clip is not None and not services.audio_problems(
        duration=clip.duration,
        size=clip.size,
        limits=catalog.offer(provider, catalog.S2V).limits,
    )


def _portrait_ok(membership: Membership, code: str, provider: str) -> bool:
    portrait = _team_object(Portrait, membership, code)
    if portrait is None:
        return False
    try:
        return services.portrait_verdict(
            portrait=portrait, provider=services.portrait_checker(provider)
        ).check_pass
    except services.Rejected:  # a kept portrait whose check could not run yet
        return False


@team_required
@require_POST
def portrait_check(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The inline verdict. Always 200: htmx 2 does not swap error responses."""
    context = _upload_outcome(
        request,
        "portrait_file",
        lambda upload: services.portrait_submit(
            team=membership.team,
            user=request.user,  # type: ignore[arg-type]
            upload=upload,
            provider=services.portrait_checker(_chosen(membership, request.POST)),
        ),
    )
    return _portrait_answer(request, membership, context)


def _upload_outcome(
    request: HttpRequest, field: str, submit: Callable[[File[bytes]], object]
) -> dict[str, Any]:
    """The context of an inline check: what `submit` made of the uploaded file
    as "outcome", or why the upload or `submit` refused it as "error"."""
    form = UploadForm(
        request.POST,
        request.FILES,
        field_name=field,
        max_mb=settings.S2V_MAX_UPLOAD_MB,
    )
    context: dict[str, Any] = {"error": "", "outcome": None}
    if not form.is_valid():
        context["error"] = form.errors[field][0]
    else:
        try:
            context["outcome"] = submit(form.cleaned_data[field])
        except services.Rejected as exc:
            context["error"] = exc.message
    return context


@team_required
@require_POST
def portrait_recheck(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Check a kept portrait again: after the check could not run, or for another
    provider the form switched to (`switch`). Always 200."""
    data = request.POST
    provider = _chosen(membership, data)
    code = data.get("portrait", "") or data.get("unchecked", "")
    portrait = _team_object(Portrait, membership, code)
    context: dict[str, Any] = {"error": "", "outcome": None}
    if portrait is None and data.get("switch"):
        if data.get("portrait_failed"):
            # A failed portrait is not kept: only its file can be checked again.
            context["error"] = (
                "Choose the portrait again to have it checked for "
                f"{catalog.provider_label(provider)}."
            )
    elif portrait is None:
        context["error"] = "That portrait is gone. Choose the file again."
    else:
        try:
            context["outcome"] = services.portrait_recheck(
                team=membership.team,
                user=request.user,  # type: ignore[arg-type]
                portrait=portrait,
                provider=services.portrait_checker(provider),
            )
        except services.Rejected as exc:
            context["error"] = exc.message
    return _portrait_answer(request, membership, context)


def _portrait_answer(
    request: HttpRequest, membership: Membership, context: dict[str, Any]
) -> HttpResponse:
    """The portrait verdict fragment, followed by the Generate button for its new state."""
    outcome = context["outcome"]
    passed = bool(outcome and outcome.portrait)
    html = str(
        render_to_string("studio/job_create.html#portrait-verdict", context, request)
    )
    audio_code = request.POST.get("audio", "")
    html += _generate_ready(
        request,
        membership,
        portrait_code=str(outcome.portrait.code) if passed else "",
        audio_code=audio_code,
        portrait_ok=passed,
        audio_ok=_audio_ok(membership, audio_code, _chosen(membership, request.POST)),
    )
    return HttpResponse(html)


@team_required
@require_POST
def audio_check(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The inline audio report: duration, format and whether it fits. Always 200."""
    limits = _page_limits(selectors.team_providers(team=membership.team))
    context = _upload_outcome(
        request,
        "audio_file",
        lambda upload: services.audio_submit(
            team=membership.team,
            user=request.user,  # type: ignore[arg-type]
            upload=upload,
            limits=limits,
        ),
    )
    context["limits"] = limits
    outcome = context["outcome"]
    fits = bool(outcome and outcome.clip)
    html = render_to_string("studio/job_create.html#audio-report", context, request)
    portrait_code = request.POST.get("portrait", "")
    html += _generate_ready(
        request,
        membership,
        portrait_code=portrait_code,
        audio_code=str(outcome.clip.code) if fits else "",
        portrait_ok=_portrait_ok(
            membership, portrait_code, _chosen(membership, request.POST)
        ),
        audio_ok=fits,
    )
    return HttpResponse(html)
