"""The gallery: filters and pages, its polled cards, stars, and zips of chosen videos."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HTMX_STOP_POLLING

from studio import selectors, services
from studio.alerts import htmx_alert
from studio.media.serving import harden, zip_stream
from studio.models import GenerationJob, Membership

from .common import _safe_next, _team_job
from .decorators import team_required
from .media import _download_name

GALLERY_PAGE_SIZE = 12


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
