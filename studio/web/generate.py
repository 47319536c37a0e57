"""The new-video form: provider choices, the estimate and budget left, 'Use again'."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from studio import billing, catalog, selectors, services
from studio.forms import GenerateForm
from studio.models import AudioClip, Membership, Portrait, User
from studio.providers.base import ProviderLimits

from .common import _team_job, _team_object
from .decorators import team_required


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("studio:job-create")


@team_required
@require_http_methods(["GET", "POST"])
def job_create(request: HttpRequest, membership: Membership) -> HttpResponse:
    reuse = _reuse_context(
        membership, request.GET.get("from", "") if request.method == "GET" else ""
    )
    # An empty POST is still a submission: it must show what is missing.
    form = GenerateForm(
        request.POST if request.method == "POST" else None,
        initial=reuse.get("initial"),
    )
    if request.method == "POST" and form.is_valid():
        team = membership.team
        portrait = Portrait.objects.filter(
            team=team, code=form.cleaned_data["portrait"]
        ).first()
        audio = AudioClip.objects.filter(
            team=team, code=form.cleaned_data["audio"]
        ).first()
        if portrait is None or audio is None:
            form.add_error(
                None, "Upload the portrait and the audio again; they were not found."
            )
        else:
            try:
                job = services.job_create(
                    team=team,
                    user=request.user,  # type: ignore[arg-type]
                    portrait=portrait,
                    audio=audio,
                    resolution=form.cleaned_data["resolution"],
                    title=form.cleaned_data["title"],
                    budget_override=form.cleaned_data["budget_override"]
                    and membership.role == Membership.Role.ADMIN,
                    provider=form.cleaned_data["provider"],
                    params={
                        "prompt": form.cleaned_data["prompt"],
                        "seed": form.cleaned_data["seed"],
                    },
                )
            except services.Rejected as exc:
                form.add_error(None, exc.message)
            else:
                if request.htmx:  # type: ignore[attr-defined]
                    return HttpResponseClientRedirect(job.get_absolute_url())
                return redirect(job)
    reused = reuse.get("reused_from")
    names = selectors.team_providers(team=membership.team)
    context = {
        "form": form,
        "limits": _page_limits(names),
        "max_upload_mb": settings.S2V_MAX_UPLOAD_MB,
        "audio_formats": services.UPLOAD_AUDIO_LABEL,
        "can_override": membership.role == Membership.Role.ADMIN,
        "no_provider": not names,
        **_estimate_context(
            request,
            membership,
            portrait_code=str(reused.portrait.code) if reused else None,
            audio_code=str(reused.audio.code) if reused else None,
            initial=reuse.get("initial"),
        ),
        **reuse,
    }
    if request.method == "POST" and request.htmx:  # type: ignore[attr-defined]
        return render(request, "studio/job_create.html#generate-errors", context)
    return render(request, "studio/job_create.html", context)


def _page_limits(names: list[str]) -> ProviderLimits:
    """What the upload boxes accept: the widest of the team's choices."""
    return selectors.widest_limits(names or [catalog.default_provider()])


def _chosen(membership: Membership, data: Any, fallback: str = "") -> str:
    """The provider the form has chosen: asked for, else `fallback`, else the first."""
    names = selectors.team_providers(team=membership.team)
    for name in (data.get("provider", ""), fallback):
        if name in names:
            return str(name)
    # No provider the team may use is enabled (an admin's restriction names
    # providers this studio no longer runs): checks fall to the free local
    # one, and job_create says what to ask the admins.
    return names[0] if names else catalog.LOCAL


def _generate_ready(
    request: HttpRequest,
    membership: Membership,
    *,
    portrait_code: str,
    audio_code: str,
    portrait_ok: bool,
    audio_ok: bool,
) -> SafeString:
    """The Generate button, the estimate and the parameters, swapped in out of band."""
    html = render_to_string(
        "studio/job_create.html#generate-button",
        {"ready": portrait_ok and audio_ok, "oob": True},
    )
    context = _estimate_context(
        request, membership, portrait_code=portrait_code, audio_code=audio_code
    )
    return (
        html
        + render_to_string(
            "studio/job_create.html#estimate", {**context, "oob": True}, request
        )
        + render_to_string(
            "studio/job_create.html#params", {**context, "oob": True}, request
        )
    )


def _estimate_context(
    request: HttpRequest,
    membership: Membership,
    *,
    portrait_code: str | None = None,
    audio_code: str | None = None,
    initial: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each choice's cost and wait for the form's current inputs, and the budget left."""
    data = request.POST if request.method == "POST" else request.GET
    initial = initial or {}
    tiers = catalog.model(catalog.S2V).tiers
    resolution = data.get("resolution") or initial.get("resolution") or tiers[0]
    if resolution not in tiers:
        resolution = tiers[0]
    if audio_code is None:
        audio_code = data.get("audio", "")
    if portrait_code is None:
        portrait_code = data.get("portrait", "")
    audio = _team_object(AudioClip, membership, audio_code)
    portrait = _team_object(Portrait, membership, portrait_code)
    choices = selectors.generation_choices(
        team=membership.team,
        resolution=resolution,
        audio_seconds=audio.duration if audio else None,
        audio_size=audio.size if audio else None,
        portrait_sha256=portrait.sha256 if portrait else "",
    )
    wanted = _chosen(membership, data, str(initial.get("provider", "")))
    usable = [c for c in choices if not c.disabled]
    chosen = next((c for c in usable if c.name == wanted), None)
    if chosen is None:
        # The one asked for cannot take these inputs: the first that can.
        chosen = (
            usable[0]
            if usable
            else next(
                (c for c in choices if c.name == wanted),
                choices[0] if choices else None,
            )
        )
    user: User = request.user  # type: ignore[assignment]
    team_budget, member_budget = billing.budgets_for(team=membership.team, user=user)
    left = []
    for budget, label in ((member_budget, "you"), (team_budget, "the team")):
        if budget is not None and budget.monthly_amount is not None:
            used = billing.usage(
                team=membership.team, user=user if budget.user_id else None
            )
            left.append((label, budget.monthly_amount - used.committed))
    params = {
        name: data.get(name, initial.get(name, "")) for name in ("prompt", "seed")
    }
    return {
        "choices": choices if len(choices) > 1 else [],
        "chosen": chosen,
        "provider": catalog.provider(chosen.name if chosen else wanted),
        "estimate": chosen.estimate if chosen else None,
        "audio_clip": audio,
        "budget_left": left,
        "resolution": resolution,
        "tiers": tiers,
        "params": params,
        "prompt_spec": catalog.model(catalog.S2V).param("prompt"),
        "seed_spec": catalog.model(catalog.S2V).param("seed"),
    }


@team_required
@require_GET
def job_estimate(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The estimate fragment, refreshed when the resolution changes."""
    return render(
        request,
        "studio/job_create.html#estimate",
        _estimate_context(request, membership),
    )


def _reuse_context(membership: Membership, code: str) -> dict[str, Any]:
    """'Use again': the upload page with a job's stored inputs already checked."""
    if not code:
        return {}
    try:
        job = _team_job(membership, UUID(code))
    except ValueError:
        raise Http404 from None
    names = selectors.team_providers(team=membership.team)
    provider = job.provider if job.provider in names else ""
    reused = services.job_reuse(
        job=job,
        provider=provider or _chosen(membership, {}),
        limits=_page_limits(names),
    )
    return {
        "initial": {
            "resolution": job.resolution,
            "title": job.title,
            "provider": provider,
            "prompt": job.param("prompt"),
            "seed": job.param("seed"),
        },
        "reused_from": job,
        "portrait_outcome": reused.portrait,
        "audio_outcome": reused.audio,
        "ready": reused.ready,
    }
