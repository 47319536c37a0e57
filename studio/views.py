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

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import (
    HTMX_STOP_POLLING,
    HttpResponseClientRedirect,
    trigger_client_event,
)

from . import billing, dispatcher, selectors, services
from .engine import get_engine
from .engine.dashscope import PUBLIC_LINK_MAX_AGE, PUBLIC_LINK_SALT
from .forms import (
    BudgetForm,
    GenerateForm,
    MemberAddForm,
    RenameForm,
    TeamBudgetForm,
    UploadForm,
)
from .media import serve_file
from .middleware import SESSION_TEAM_KEY
from .models import (
    AudioClip,
    Budget,
    FaceCheck,
    GenerationJob,
    Membership,
    Portrait,
    Team,
    User,
)

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


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("studio:job-create")


# -- upload and generate ------------------------------------------------------


@team_required
def job_create(request: HttpRequest, membership: Membership) -> HttpResponse:
    engine = get_engine()
    form = GenerateForm(request.POST or None)
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
                )
            except services.Rejected as exc:
                form.add_error(None, exc.message)
            else:
                if request.htmx:  # type: ignore[attr-defined]
                    return HttpResponseClientRedirect(job.get_absolute_url())
                return redirect(job)
    context = {
        "form": form,
        "engine": engine,
        "limits": engine.limits,
        "max_upload_mb": settings.S2V_MAX_UPLOAD_MB,
        "audio_formats": services.UPLOAD_AUDIO_LABEL,
        "can_override": membership.role == Membership.Role.ADMIN,
        **_estimate_context(request, membership),
    }
    if request.method == "POST" and request.htmx:  # type: ignore[attr-defined]
        return render(request, "studio/job_create.html#generate-errors", context)
    return render(request, "studio/job_create.html", context)


def _generate_ready(
    request: HttpRequest,
    membership: Membership,
    *,
    portrait_code: str,
    audio_code: str,
    portrait_ok: bool,
    audio_ok: bool,
) -> str:
    """The Generate button and the cost estimate, swapped in out of band."""
    html = render_to_string(
        "studio/job_create.html#generate-button",
        {"ready": portrait_ok and audio_ok, "oob": True},
    )
    context = _estimate_context(
        request, membership, portrait_code=portrait_code, audio_code=audio_code
    )
    return html + render_to_string(
        "studio/job_create.html#estimate", {**context, "oob": True}, request
    )


def _estimate_context(
    request: HttpRequest,
    membership: Membership,
    *,
    portrait_code: str | None = None,
    audio_code: str | None = None,
) -> dict[str, Any]:
    """The cost estimate for the form's current inputs, next to the budget left."""
    engine = get_engine()
    data = request.POST if request.method == "POST" else request.GET
    resolution = data.get("resolution") or GenerationJob.Resolution.P480
    if resolution not in engine.limits.resolutions:
        resolution = GenerationJob.Resolution.P480
    if audio_code is None:
        audio_code = data.get("audio", "")
    if portrait_code is None:
        portrait_code = data.get("portrait", "")
    audio = _team_object(AudioClip, membership, audio_code)
    portrait = _team_object(Portrait, membership, portrait_code)
    needs_check = (
        portrait is None
        or not FaceCheck.objects.filter(
            sha256=portrait.sha256, engine=engine.name
        ).exists()
    )
    estimate = billing.estimate(
        provider=engine.name,
        resolution=resolution,
        audio_seconds=audio.duration if audio else 0.0,
        needs_check=needs_check and engine.remote,
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
    return {
        "estimate": estimate,
        "audio_clip": audio,
        "budget_left": left,
        "resolution": resolution,
    }


def _team_object(model: type[Any], membership: Membership, code: str) -> Any:
    try:
        return model.objects.filter(team=membership.team, code=UUID(code)).first()
    except ValueError:
        return None


@team_required
@require_GET
def job_estimate(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The estimate fragment, refreshed when the resolution changes."""
    return render(
        request,
        "studio/job_create.html#estimate",
        _estimate_context(request, membership),
    )


def _audio_ok(membership: Membership, code: str) -> bool:
    clip = _team_object(AudioClip, membership, code)
    return clip is not None and not services.audio_problems(
        duration=clip.duration, size=clip.size, engine=get_engine()
    )


def _portrait_ok(membership: Membership, code: str) -> bool:
    portrait = _team_object(Portrait, membership, code)
    return (
        portrait is not None and services.portrait_verdict(portrait=portrait).check_pass
    )


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
            )
        except services.Rejected as exc:
            context["error"] = exc.message
    outcome = context["outcome"]
    passed = bool(outcome and outcome.portrait)
    html = render_to_string("studio/job_create.html#portrait-verdict", context, request)
    audio_code = request.POST.get("audio", "")
    html += _generate_ready(
        request,
        membership,
        portrait_code=str(outcome.portrait.code) if passed else "",
        audio_code=audio_code,
        portrait_ok=passed,
        audio_ok=_audio_ok(membership, audio_code),
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
    context: dict[str, Any] = {
        "error": "",
        "outcome": None,
        "limits": get_engine().limits,
    }
    if not form.is_valid():
        context["error"] = form.errors["audio_file"][0]
    else:
        try:
            context["outcome"] = services.audio_submit(
                team=membership.team,
                user=request.user,  # type: ignore[arg-type]
                upload=form.cleaned_data["audio_file"],
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
        portrait_ok=_portrait_ok(membership, portrait_code),
        audio_ok=fits,
    )
    return HttpResponse(html)


# -- one job ------------------------------------------------------------------


def _job_context(job: GenerationJob) -> dict[str, Any]:
    return {
        "job": job,
        "progress": selectors.job_progress(job=job),
        "verdict": FaceCheck.objects.filter(
            sha256=job.portrait.sha256, engine=job.engine
        ).first(),
        "engine_label": get_engine(job.engine).label,
    }


@team_required
@require_GET
def job_detail(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
    return render(request, "studio/job_detail.html", _job_context(job))


@team_required
@require_GET
def job_status(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    """The polled fragment. A finished job renders without hx-trigger and answers 286."""
    job = _team_job(membership, code)
    status = HTMX_STOP_POLLING if job.is_terminal else 200
    response = render(
        request, "studio/job_detail.html#job-status", _job_context(job), status=status
    )
    if job.is_terminal:
        trigger_client_event(response, "job-finished", {"code": str(job.code)})
    return response


@team_required
@require_GET
def job_card(request: HttpRequest, membership: Membership, code: UUID) -> HttpResponse:
    """One gallery card, polled while its job runs."""
    job = _team_job(membership, code)
    positions = (
        selectors.queue_positions(engine=job.engine) if job.status == "queued" else {}
    )
    status = HTMX_STOP_POLLING if job.is_terminal else 200
    return render(
        request,
        "studio/gallery.html#job-card",
        {"job": job, "position": positions.get(job.pk)},
        status=status,
    )


@team_required
@require_POST
def job_cancel(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponse:
    job = _team_job(membership, code)
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
    form = RenameForm(request.POST)
    if form.is_valid():
        services.job_rename(job=job, title=form.cleaned_data["title"])
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "studio/job_detail.html#job-title", {"job": job})
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
    filters = selectors.GalleryFilters(
        author=request.GET.get("author", ""),
        status=request.GET.get("status", "")
        if request.GET.get("status") in GenerationJob.Status.values
        else "",
        resolution=request.GET.get("resolution", "")
        if request.GET.get("resolution") in GenerationJob.Resolution.values
        else "",
    )
    paginator = Paginator(
        selectors.gallery_jobs(team=team, filters=filters), GALLERY_PAGE_SIZE
    )
    page = paginator.get_page(request.GET.get("page"))
    positions = selectors.queue_positions(engine=get_engine().name)
    context = {
        "page": page,
        "jobs": [(job, positions.get(job.pk)) for job in page.object_list],
        "filters": filters,
        "query": filters.as_query(),
        "authors": selectors.team_authors(team=team),
        "statuses": GenerationJob.Status.choices,
        "resolutions": GenerationJob.Resolution.choices,
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
    return serve_file(request, portrait.file.name)


@team_required
@require_GET
def audio_file(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    clip = get_object_or_404(AudioClip, code=code, team=membership.team)
    return serve_file(request, clip.file.name)


@team_required
@require_GET
def job_video(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    job = _team_job(membership, code)
    if not job.video:
        raise Http404("This job has no video yet.")
    name = None
    if "download" in request.GET:
        safe_title = "".join(
            c for c in job.display_title[:60] if c.isalnum() or c in " -_."
        )
        name = f"{safe_title.strip() or 'video'} {job.resolution}.mp4"
    return serve_file(request, job.video.name, download_as=name)


@team_required
@require_GET
def job_poster(
    request: HttpRequest, membership: Membership, code: UUID
) -> HttpResponseBase:
    job = _team_job(membership, code)
    if not job.poster:
        raise Http404("This job has no poster yet.")
    return serve_file(request, job.poster.name)


# -- account ------------------------------------------------------------------


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    team = get_object_or_404(
        Team, code=request.POST.get("team"), memberships__user=request.user
    )
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
    return serve_file(request, name)


@login_required
@require_POST
def provider_resume(request: HttpRequest) -> HttpResponse:
    """An admin says the provider account is fixed: dispatch again at once."""
    if not _is_admin(request):
        raise Http404
    dispatcher.account_resume(engine_name=request.POST.get("engine", ""))
    messages.success(
        request,
        "Dispatching resumed. If the account is still refused, it pauses again.",
    )
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}
    ):
        next_url = reverse("studio:gallery")
    return redirect(next_url)


def _is_admin(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return bool(
        request.user.is_staff
        or (membership and membership.role == Membership.Role.ADMIN)
    )


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
def team_settings(request: HttpRequest, membership: Membership) -> HttpResponse:
    team = membership.team
    team_budget, _ = Budget.objects.get_or_create(team=team, user=None)
    team_form = TeamBudgetForm(instance=team_budget, prefix="team")
    add_form = MemberAddForm(prefix="add")
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
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
            elif action == "member-budget":
                member = get_object_or_404(
                    Membership, team=team, pk=request.POST.get("member")
                )
                form = BudgetForm(request.POST, prefix=f"m{member.pk}")
                if form.is_valid():
                    services.budget_update(
                        team=team, user=member.user, **form.cleaned_data
                    )
                    messages.success(request, f"Budget of {member.user} saved.")
                else:
                    messages.error(
                        request, "Check the budget fields: " + form.errors.as_text()
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
            elif action in ("set-role", "remove-member"):
                member = get_object_or_404(
                    Membership, team=team, pk=request.POST.get("member")
                )
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
            "team_usage": billing.usage(team=team),
            "rows": rows,
            "add_form": add_form,
            "roles": Membership.Role.choices,
        },
    )


@admin_required
@require_GET
def spend(request: HttpRequest, membership: Membership) -> HttpResponse:
    team = membership.team
    month = request.GET.get("month") or timezone.localtime().strftime("%Y-%m")
    start, end = selectors.month_bounds(month)
    days = selectors.spend_by(team=team, start=start, end=end, by="day")
    context = {
        "month": start.strftime("%Y-%m"),
        "previous": (start - timedelta(days=1)).strftime("%Y-%m"),
        "next": end.strftime("%Y-%m"),
        "tables": [
            (title, selectors.spend_by(team=team, start=start, end=end, by=by))
            for title, by in (
                ("By member", "user"),
                ("By resolution", "resolution"),
                ("By engine", "engine"),
                ("By kind", "kind"),
            )
        ],
        "days": days,
        "chart": _daily_chart(days, start, end),
        "usage": billing.usage(team=team),
        "teams": selectors.spend_per_team(start=start, end=end)
        if request.user.is_staff
        else [],
        "currency": billing.currency(),
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
def ledger_csv(request: HttpRequest, membership: Membership) -> StreamingHttpResponse:
    """The month's ledger, one row per entry, to match line by line with the provider's bill."""
    start, end = selectors.month_bounds(request.GET.get("month", ""))
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
