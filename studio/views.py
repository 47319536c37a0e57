"""Thin views: parse the request, call a service or selector, choose a template."""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import timezone as datetime_timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
)
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import (
    HTMX_STOP_POLLING,
    HttpResponseClientRedirect,
    trigger_client_event,
)

from . import (
    billing,
    catalog,
    dispatcher,
    notifications,
    reconcile,
    selectors,
    services,
)
from .alerts import htmx_alert
from .formats import POSTER_FORMAT, VIDEO_FORMAT
from .forms import (
    BudgetForm,
    GenerateForm,
    MemberAddForm,
    RenameForm,
    TeamBudgetForm,
    TeamProvidersForm,
    UploadForm,
)
from .media.serving import harden, input_format, serve_file, zip_stream
from .middleware import SESSION_TEAM_KEY
from .models import (
    AudioClip,
    Budget,
    FaceCheck,
    GenerationJob,
    Membership,
    Portrait,
    ShareLink,
    Team,
    User,
)
from .providers import get_provider
from .providers.base import ProviderLimits
from .providers.dashscope.provider import PUBLIC_LINK_MAX_AGE, PUBLIC_LINK_SALT

GALLERY_PAGE_SIZE = 12

View = Callable[..., HttpResponseBase]


def team_required(view: View) -> View:
    """Sign-in plus a team: the view receives the active membership."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        membership: Membership | None = request.membership  # type: ignore[attr-defined]
        if not membership:
            return render(request, "studio/no_team.html", status=403)
        return view(request, membership, *args, **kwargs)

    return wrapper


def _team_job(membership: Membership, code: UUID) -> GenerationJob:
    # Anything outside the active team answers 404, never 403: no existence leaks.
    return get_object_or_404(
        GenerationJob.objects.select_related("portrait", "audio", "created_by"),
        code=code,
        team=membership.team,
    )


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


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("studio:job-create")


# -- upload and generate ------------------------------------------------------


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
    return names[0] if names else catalog.default_provider()


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


def _team_object(model: type[Any], membership: Membership, code: str) -> Any:
    try:
        return model.objects.filter(team=membership.team, code=UUID(code)).first()
    except ValueError:
        return None


def _team_member(team: Team, member_id: str) -> Membership:
    """A membership of this team by id; 404 for anything else, garbage included."""
    if not member_id.isdigit():
        raise Http404("No such member.")
    return get_object_or_404(Membership, team=team, pk=int(member_id))


@team_required
@require_GET
def job_estimate(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The estimate fragment, refreshed when the resolution changes."""
    return render(
        request,
        "studio/job_create.html#estimate",
        _estimate_context(request, membership),
    )


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
    form = UploadForm(
        request.POST,
        request.FILES,
        field_name="portrait_file",
        max_mb=settings.S2V_MAX_UPLOAD_MB,
    )
    context: dict[str, Any] = {"error": "", "outcome": None}
    if not form.is_valid():
        context["error"] = form.errors["portrait_file"][0]
    else:
        try:
            context["outcome"] = services.portrait_submit(
                team=membership.team,
                user=request.user,  # type: ignore[arg-type]
                upload=form.cleaned_data["portrait_file"],
                provider=services.portrait_checker(_chosen(membership, request.POST)),
            )
        except services.Rejected as exc:
            context["error"] = exc.message
    return _portrait_answer(request, membership, context)


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
    form = UploadForm(
        request.POST,
        request.FILES,
        field_name="audio_file",
        max_mb=settings.S2V_MAX_UPLOAD_MB,
    )
    limits = _page_limits(selectors.team_providers(team=membership.team))
    context: dict[str, Any] = {"error": "", "outcome": None, "limits": limits}
    if not form.is_valid():
        context["error"] = form.errors["audio_file"][0]
    else:
        try:
            context["outcome"] = services.audio_submit(
                team=membership.team,
                user=request.user,  # type: ignore[arg-type]
                upload=form.cleaned_data["audio_file"],
                limits=limits,
            )
        except services.Rejected as exc:
            context["error"] = exc.message
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


# -- one job ------------------------------------------------------------------


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


@team_required
@require_GET
def job_card(request: HttpRequest, membership: Membership, code: UUID) -> HttpResponse:
    """One gallery card, polled while its job runs."""
    job = selectors.gallery_card(
        team=membership.team,
        user=request.user,  # type: ignore[arg-type]
        code=code,
    )
    if job is None:
        raise Http404
    positions = (
        selectors.queue_positions(provider=job.provider)
        if job.status == "queued"
        else {}
    )
    status = HTMX_STOP_POLLING if job.is_terminal else 200
    return render(
        request,
        "studio/gallery.html#job-card",
        {
            "job": job,
            "position": positions.get(job.pk),
            "approval_required": membership.team.approval_required,
            "next": reverse("studio:gallery"),
        },
        status=status,
    )


@team_required
@require_POST
def job_cancel(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    if refused := _refuse_change(request, membership, job, action="cancel this video"):
        return refused
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
    try:
        new_job = services.job_retry(job=job, user=request.user)  # type: ignore[arg-type]
    except services.Rejected as exc:
        messages.error(request, exc.message)
        return _back_to(request, job.get_absolute_url())
    messages.success(
        request, "Queued again with the same portrait, audio and settings."
    )
    return _back_to(request, new_job.get_absolute_url())


@team_required
@require_POST
def job_rename(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    if refused := _refuse_change(request, membership, job, action="rename this video"):
        return refused
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
    if request.htmx:  # type: ignore[attr-defined]
        return render(
            request,
            "studio/job_detail.html#job-title",
            {
                "job": job,
                "can_change": True,
                "title_error": error,
                "title_draft": request.POST.get("title", ""),
            },
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, "Title saved.")
    return redirect(job)


def _back_to(request: HttpRequest, url: str) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponseClientRedirect(url)
    return redirect(url)


# -- gallery ------------------------------------------------------------------


@team_required
@require_GET
@vary_on_headers("HX-Request")
def gallery(request: HttpRequest, membership: Membership) -> HttpResponse:
    team = membership.team
    filters = selectors.GalleryFilters.from_query(request.GET)
    paginator = Paginator(
        selectors.gallery_jobs(
            team=team,
            filters=filters,
            user=request.user,  # type: ignore[arg-type]
        ),
        GALLERY_PAGE_SIZE,
    )
    page = paginator.get_page(request.GET.get("page"))
    positions = selectors.queue_positions_all()
    context = {
        "page": page,
        "jobs": [(job, positions.get(job.pk)) for job in page.object_list],
        "filters": filters,
        "query": filters.as_query(),
        # Only the whole page shows the filter form; the grid skips this query.
        "authors": lambda: selectors.team_authors(team=team),
        "statuses": GenerationJob.Status.choices,
        "reviews": GenerationJob.ReviewState.choices,
        "resolutions": GenerationJob.Resolution.choices,
        "providers": selectors.provider_names(),
        "sorts": [(key, label) for key, (label, _) in selectors.SORTS.items()],
        "date_min": selectors.DATE_MIN,
        "date_max": selectors.DATE_MAX,
        "approval_required": team.approval_required,
        "next": request.get_full_path(),
    }
    template = "studio/gallery.html"
    if request.htmx and not request.htmx.boosted:  # type: ignore[attr-defined]
        template += "#gallery-grid"
    return render(request, template, context)


# -- media: only for members of the owning team -------------------------------


@team_required
@require_GET
def portrait_file(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    portrait = get_object_or_404(Portrait, code=code, team=membership.team)
    return serve_file(request, portrait.file.name, fmt=portrait.format)


@team_required
@require_GET
def audio_file(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    clip = get_object_or_404(AudioClip, code=code, team=membership.team)
    return serve_file(request, clip.file.name, fmt=clip.format)


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


# -- account ------------------------------------------------------------------


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    try:
        code = UUID(request.POST.get("team", ""))
    except ValueError:
        raise Http404("You are not in that team.") from None
    team = get_object_or_404(Team, code=code, memberships__user=request.user)
    request.session[SESSION_TEAM_KEY] = team.pk
    messages.success(request, f"Now working in {team.name}.")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}
    ):
        next_url = reverse("studio:gallery")
    return redirect(next_url)


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


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A friendly page instead of Django's technical 403."""
    return render(request, "studio/csrf_failure.html", status=403)


# -- team administration and spend ------------------------------------------------------


def admin_required(view: View) -> View:
    """Team admins (and site staff) only; everyone else gets 404, like any other team's page."""

    @team_required
    @functools.wraps(view)
    def wrapper(
        request: HttpRequest, membership: Membership, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if membership.role != Membership.Role.ADMIN and not request.user.is_staff:
            raise Http404
        return view(request, membership, *args, **kwargs)

    return wrapper


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


# -- gallery, review and hand-off ---------------------------------------------


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


@team_required
@require_POST
def job_favourite(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    """Star or unstar: `on=1` or `on=0`, so a double click cannot undo itself."""
    job = _team_job(membership, code)
    on = request.POST.get("on")
    if on not in ("0", "1"):
        # Anything else used to unstar: a wrong request must not look like a choice.
        message = "Star or unstar was not clear; nothing was changed."
        if request.htmx:  # type: ignore[attr-defined]
            return htmx_alert(request, message)
        messages.error(request, message)
        return redirect(_safe_next(request, job.get_absolute_url()))
    job.is_favourite = services.favourite_set(  # type: ignore[attr-defined]
        job=job,
        user=request.user,  # type: ignore[arg-type]
        on=on == "1",
    )
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "studio/gallery.html#favourite", {"job": job})
    return redirect(_safe_next(request, job.get_absolute_url()))


@team_required
@require_POST
def job_notes(request: HttpRequest, membership: Membership, code: UUID) -> HttpResponse:
    job = _team_job(membership, code)
    if refused := _refuse_change(
        request, membership, job, action="change the notes of this video"
    ):
        return refused
    notes = request.POST.get("notes", "")
    error = ""
    try:
        services.job_set_notes(job=job, notes=notes)
    except services.Rejected as exc:
        error = exc.message
    if request.htmx:  # type: ignore[attr-defined]
        return render(
            request,
            "studio/job_detail.html#job-notes",
            {
                "job": job,
                "can_change": True,
                "saved": not error,
                "notes_error": error,
                # On an error the text stays in the box, not lost with the reply.
                "notes_draft": notes if error else job.notes,
            },
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, "Notes saved.")
    return redirect(job)


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


@admin_required
@require_GET
def spend(request: HttpRequest, membership: Membership) -> HttpResponse:
    team = membership.team
    month_error = ""
    try:
        start, end = selectors.month_bounds(request.GET.get("month", ""))
    except selectors.BadMonth as exc:
        month_error = f"{exc} Showing this month instead."
        start, end = selectors.month_bounds("")
    days = selectors.spend_by(team=team, start=start, end=end, by="day")
    previous = start - timedelta(days=1)
    context = {
        "month": start.strftime("%Y-%m"),
        "month_error": month_error,
        # No links out of the supported range: they could only show an error.
        "previous": previous.strftime("%Y-%m")
        if previous.date() >= selectors.DATE_MIN
        else "",
        "next": end.strftime("%Y-%m") if end.date() <= selectors.DATE_MAX else "",
        "tables": [
            (title, selectors.spend_by(team=team, start=start, end=end, by=by))
            for title, by in (
                ("By member", "user"),
                ("By resolution", "resolution"),
                ("By provider", "provider"),
                ("By kind", "kind"),
            )
        ],
        "days": days,
        "wasted": selectors.spent_for_nothing(team=team, start=start, end=end),
        "chart": _daily_chart(days, start, end),
        "usage": billing.usage(team=team),
        "teams": selectors.spend_per_team(start=start, end=end)
        if request.user.is_staff
        else [],
        "currency": billing.currency(),
        # Site staff see every team's, as they hold the provider account's bill.
        "marked": selectors.jobs_marked_for_admin(
            team=None if request.user.is_staff else team
        )[:50],
    }
    return render(request, "studio/spend.html", context)


def _daily_chart(
    days: list[selectors.SpendRow], start: datetime, end: datetime
) -> dict[str, Any]:
    """Bars for a server-rendered SVG: one per day of the month, scaled to the highest."""
    by_day = {row.label: row.amount for row in days}
    count = (end - start).days
    highest = max(by_day.values(), default=Decimal(0)) or Decimal(1)
    width, height, gap = 600, 160, 2
    bar = (width - gap * count) / count
    bars = []
    for index in range(count):
        day = (start + timedelta(days=index)).date()
        amount = by_day.get(str(day), Decimal(0))
        h = float(amount / highest) * (height - 20)
        bars.append(
            {
                "x": round(index * (bar + gap), 1),
                "y": round(height - 14 - h, 1),
                "w": round(bar, 1),
                "h": round(h, 1),
                "day": day,
                "amount": amount,
            }
        )
    return {"width": width, "height": height, "bars": bars, "highest": highest}


@admin_required
@require_GET
def ledger_csv(request: HttpRequest, membership: Membership) -> HttpResponseBase:
    """The month's ledger, one row per entry, to match line by line with the provider's bill."""
    try:
        start, end = selectors.month_bounds(request.GET.get("month", ""))
    except selectors.BadMonth as exc:
        # A download has no page to show the message on; the browser shows this.
        return HttpResponseBadRequest(
            f"{exc}\n", content_type="text/plain; charset=utf-8"
        )
    entries = selectors.ledger(team=membership.team, start=start, end=end)
    provider_tz = datetime_timezone(timedelta(hours=8))

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    header = [
        "time_utc",
        "time_utc8",
        "team",
        "user",
        "job",
        "kind",
        "provider",
        "model",
        "resolution",
        "unit",
        "quantity",
        "unit_price",
        "amount",
        "currency",
        "billed",
        "reason",
        "remote_id",
    ]

    def rows() -> Iterator[str]:
        yield writer.writerow(header)
        for e in entries.iterator(chunk_size=500):
            yield writer.writerow(
                [
                    e.created_at.astimezone(UTC).isoformat(timespec="seconds"),
                    e.created_at.astimezone(provider_tz).strftime("%Y-%m-%d %H:%M:%S"),
                    membership.team.slug,
                    e.user.username if e.user else "",
                    str(e.job.code) if e.job else "",
                    e.kind,
                    e.provider,
                    e.model,
                    e.resolution,
                    e.unit,
                    e.quantity,
                    e.unit_price,
                    e.amount,
                    e.currency,
                    "yes" if e.billed else "no",
                    e.reason,
                    e.remote_id,
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    name = f"s2v-ledger-{membership.team.slug}-{start:%Y-%m}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@team_required
@require_POST
def job_variant(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    resolution = request.POST.get("resolution", "")
    try:
        variant = services.job_variant(
            job=job,
            user=request.user,  # type: ignore[arg-type]
            resolution=resolution,
        )
    except services.Rejected as exc:
        messages.error(request, exc.message)
        return _back_to(request, job.get_absolute_url())
    messages.success(
        request, f"Queued a {variant.resolution} variant of the same take."
    )
    return _back_to(request, variant.get_absolute_url())


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


@team_required
@require_POST
def gallery_zip(request: HttpRequest, membership: Membership) -> HttpResponseBase:
    """The chosen videos as one zip, streamed while it is written."""
    try:
        codes = [UUID(value) for value in request.POST.getlist("job")]
    except ValueError:
        raise Http404 from None
    try:
        jobs = services.jobs_for_download(team=membership.team, codes=codes)
    except GenerationJob.DoesNotExist:
        raise Http404 from None
    except services.Rejected as exc:
        messages.error(request, exc.message)
        return redirect(_safe_next(request, reverse("studio:gallery")))
    names: set[str] = set()
    members = []
    for job in jobs:
        name = base = _download_name(job)
        n = 1
        while name in names:
            n += 1
            name = base.replace(".mp4", f" ({n}).mp4")
        names.add(name)
        members.append((name, job.video.name))
    response = StreamingHttpResponse(
        zip_stream(members), content_type="application/zip"
    )
    stamp = timezone.localtime().strftime("%Y-%m-%d %H%M")
    response["Content-Disposition"] = (
        f'attachment; filename="{membership.team.slug} videos {stamp}.zip"'
    )
    harden(response)
    response["Cache-Control"] = "private, no-store"
    return response


@team_required
@require_GET
def notification_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    user = request.user
    notices = selectors.notifications_for(user=user, team=membership.team)  # type: ignore[arg-type]
    # Seeing the list is reading it; the page still marks what was new.
    notifications.mark_all_read(user=user, team_id=membership.team_id)  # type: ignore[arg-type]
    return render(
        request,
        "studio/notifications.html",
        {"notices": notices, "unread_notifications": 0},
    )


@team_required
@require_GET
def notification_badge(request: HttpRequest, membership: Membership) -> HttpResponse:
    count = selectors.unread_count(user=request.user, team_id=membership.team_id)  # type: ignore[arg-type]
    return render(
        request, "base.html#notification-badge", {"unread_notifications": count}
    )


def _safe_next(request: HttpRequest, default: str) -> str:
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}
    ):
        return next_url
    return default
