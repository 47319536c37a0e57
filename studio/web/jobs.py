"""One job's page: detail, polled status, its panels, and cancel, retry, variant, rename, notes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from studio import catalog, selectors, services
from studio.forms import RenameForm
from studio.models import FaceCheck, GenerationJob, Membership, ShareLink

from .common import _back_to, _may_change, _team_job
from .decorators import job_change, team_required


@team_required
@require_GET
def job_detail(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    context = _job_context(job) | _job_panels_context(request, membership, job)
    return render(request, "studio/job_detail.html", context)


@team_required
@require_GET
def job_status(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    """The polled fragment. A finished job renders without hx-trigger and answers 286."""
    job = _team_job(membership, code)
    status = HTMX_STOP_POLLING if job.is_terminal else 200
    context = _job_context(job) | {"can_change": _may_change(request, membership, job)}
    response = render(
        request, "studio/job_detail.html#job-status", context, status=status
    )
    if job.is_terminal:
        trigger_client_event(response, "job-finished", {"code": str(job.code)})
    return response


def _job_context(job: GenerationJob) -> dict[str, Any]:
    return {
        "job": job,
        "progress": selectors.job_progress(job=job),
        "verdict": FaceCheck.objects.filter(
            sha256=job.portrait.sha256,
            provider=selectors.check_provider_name(job.provider, job.model),
        ).first(),
        "provider_label": catalog.provider_label(job.provider),
        "provider_spec": _known_provider(job.provider),
    }


def _known_provider(name: str) -> catalog.ProviderSpec | None:
    try:
        return catalog.provider(name)
    except catalog.UnknownChoice:
        return None


def _job_panels_context(
    request: HttpRequest, membership: Membership, job: GenerationJob
) -> dict[str, Any]:
    job.team = membership.team  # already loaded: no query for the approval rule
    panels = selectors.job_panels(job=job, user=request.user)  # type: ignore[arg-type]
    job.is_favourite = panels.is_favourite  # type: ignore[attr-defined]
    return {
        "panels": panels,
        "can_review": services.can_review(membership),
        "can_change": _may_change(request, membership, job),
        "approval_required": membership.team.approval_required,
        "releasable": services.releasable(job),
        "share_days": services.SHARE_DAYS,
        "shares": _share_rows(request, panels.shares),
        "other_resolutions": [r for r in _tiers(job) if r != job.resolution],
        "next": job.get_absolute_url(),
    }


def _tiers(job: GenerationJob) -> tuple[str, ...]:
    """The tiers a variant of this job may have: its offer's, else its model's."""
    try:
        return catalog.offer(job.provider, job.model).limits.resolutions
    except catalog.UnknownChoice:
        return catalog.model(job.model).tiers


def _share_rows(
    request: HttpRequest, shares: list[ShareLink]
) -> list[tuple[ShareLink, str, bool]]:
    now = timezone.now()
    return [
        (
            share,
            request.build_absolute_uri(
                reverse("studio:share-page", args=[services.share_token(share)])
            ),
            share.is_active(now),
        )
        for share in shares
    ]


def _after_post(
    request: HttpRequest,
    job: GenerationJob,
    partial: str,
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """htmx: the updated panel of the detail page; otherwise back to that page."""
    if request.htmx:  # type: ignore[attr-defined]
        membership: Membership = request.membership  # type: ignore[attr-defined]
        full = (
            {"job": job}
            | _job_panels_context(request, membership, job)
            | (context or {})
        )
        return render(request, f"studio/job_detail.html#{partial}", full)
    return redirect(job.get_absolute_url() + "#" + partial)


@job_change("cancel this video")
def job_cancel(request: HttpRequest, job: GenerationJob) -> HttpResponse:
    try:
        services.job_cancel(job=job)
    except services.Rejected as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Canceled. Nothing was spent on this video.")
    return _back_to(request, job.get_absolute_url())


@team_required
@require_POST
def job_retry(request: HttpRequest, membership: Membership, code: UUID) -> HttpResponse:
    job = _team_job(membership, code)
    return _queue_from(
        request,
        job,
        lambda: services.job_retry(job=job, user=request.user),  # type: ignore[arg-type]
        lambda new_job: "Queued again with the same portrait, audio and settings.",
    )


@team_required
@require_POST
def job_variant(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    resolution = request.POST.get("resolution", "")
    return _queue_from(
        request,
        job,
        lambda: services.job_variant(
            job=job,
            user=request.user,  # type: ignore[arg-type]
            resolution=resolution,
        ),
        lambda variant: f"Queued a {variant.resolution} variant of the same take.",
    )


def _queue_from(
    request: HttpRequest,
    job: GenerationJob,
    queue: Callable[[], GenerationJob],
    said: Callable[[GenerationJob], str],
) -> HttpResponse:
    """Queue a new job made from `job` and go to it; when refused, back to `job`."""
    try:
        new_job = queue()
    except services.Rejected as exc:
        messages.error(request, exc.message)
        return _back_to(request, job.get_absolute_url())
    messages.success(request, said(new_job))
    return _back_to(request, new_job.get_absolute_url())


@job_change("rename this video")
def job_rename(request: HttpRequest, job: GenerationJob) -> HttpResponse:
    form = RenameForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            services.job_rename(job=job, title=form.cleaned_data["title"])
        except services.Rejected as exc:
            error = exc.message
    else:
        error = (
            " ".join(str(e) for e in form.errors.get("title", [])) or "Check the title."
        )
    return _after_edit(
        request,
        job,
        "job-title",
        {"title_error": error, "title_draft": request.POST.get("title", "")},
        error=error,
        saved="Title saved.",
    )


@job_change("change the notes of this video")
def job_notes(request: HttpRequest, job: GenerationJob) -> HttpResponse:
    notes = request.POST.get("notes", "")
    error = ""
    try:
        services.job_set_notes(job=job, notes=notes)
    except services.Rejected as exc:
        error = exc.message
    return _after_edit(
        request,
        job,
        "job-notes",
        {
            "saved": not error,
            "notes_error": error,
            # On an error the text stays in the box, not lost with the reply.
            "notes_draft": notes if error else job.notes,
        },
        error=error,
        saved="Notes saved.",
    )


def _after_edit(
    request: HttpRequest,
    job: GenerationJob,
    partial: str,
    context: dict[str, Any],
    *,
    error: str,
    saved: str,
) -> HttpResponse:
    """htmx: the edited field again, with its error; else a message and the page."""
    if request.htmx:  # type: ignore[attr-defined]
        full = {"job": job, "can_change": True} | context
        return render(request, f"studio/job_detail.html#{partial}", full)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, saved)
    return redirect(job)
