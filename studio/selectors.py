"""Non-trivial reads: the gallery, reviews, notifications, queue positions and ETAs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from statistics import median
from uuid import UUID

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.expressions import OrderBy
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import billing, catalog
from .dispatcher import first_guess, remote_ratio
from .models import (
    FaceCheck,
    Favourite,
    GenerationJob,
    JobComment,
    JobReview,
    LedgerEntry,
    Membership,
    Notification,
    ShareLink,
    Team,
    User,
)
from .providers.base import ProviderLimits

# Seconds of work per second of audio when this instance has no history yet.
DEFAULT_WORK_RATIO = {"local": 0.5}
HISTORY_SIZE = 20


def user_teams(*, user: User) -> QuerySet[Team]:
    return Team.objects.filter(memberships__user=user).order_by("name")


def membership_for(*, user: User, team_id: int | None) -> Membership | None:
    memberships = Membership.objects.filter(user=user).select_related("team")
    if team_id is not None and (found := memberships.filter(team_id=team_id).first()):
        return found
    return memberships.order_by("team__name").first()


# Dates the gallery and spend filters accept. Far-off years used to overflow
# when a day or a month was added (9999-12-31) or when moved to UTC
# (0001-01-01); no job or ledger entry can be outside this range anyway.
DATE_MIN = date(2000, 1, 1)
DATE_MAX = date(2100, 12, 31)
DATE_RANGE_HINT = f"Dates must be between {DATE_MIN:%Y-%m-%d} and {DATE_MAX:%Y-%m-%d}."

SORTS = {
    "newest": ("Newest first", ("-queued_at", "-id")),
    "oldest": ("Oldest first", ("queued_at", "id")),
    "longest": ("Longest first", ("-video_duration", "-queued_at", "-id")),
    "shortest": ("Shortest first", ("video_duration", "-queued_at", "-id")),
    "costliest": ("Highest cost first", ("-cost", "-queued_at", "-id")),
    "cheapest": ("Lowest cost first", ("cost", "-queued_at", "-id")),
}


@dataclass(frozen=True, slots=True)
class GalleryFilters:
    """What the gallery shows. Every field is a query parameter of the same name."""

    author: str = ""
    status: str = ""
    review: str = ""
    resolution: str = ""
    provider: str = ""
    date_from: date | None = None
    date_to: date | None = None
    favourites: bool = False
    q: str = ""
    sort: str = "newest"
    # Why a date the query gave was ignored, in plain words; empty when none was.
    problems: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> GalleryFilters:
        """Parse request.GET; values that make no sense are ignored, not errors."""

        def choice(name: str, allowed: Iterable[str]) -> str:
            value = query.get(name, "")
            return value if value in allowed else ""

        problems: list[str] = []
        dates = {
            name: _parse_date(query.get(name, ""), label=label, problems=problems)
            for name, label in (("date_from", "From"), ("date_to", "To"))
        }
        return cls(
            author=query.get("author", "")[:150],
            status=choice("status", GenerationJob.Status.values),
            review=choice("review", GenerationJob.ReviewState.values),
            resolution=choice("resolution", GenerationJob.Resolution.values),
            provider=choice("provider", [name for name, _ in provider_names()]),
            date_from=dates["date_from"],
            date_to=dates["date_to"],
            favourites=query.get("favourites", "") in ("1", "on", "true"),
            q=" ".join(query.get("q", "").split())[:100],
            sort=choice("sort", SORTS) or "newest",
            problems=tuple(problems),
        )

    def as_query(self) -> dict[str, str]:
        """The non-default filters, as the query string of links that keep them."""
        pairs = {
            "q": self.q,
            "author": self.author,
            "status": self.status,
            "review": self.review,
            "resolution": self.resolution,
            "provider": self.provider,
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
            "favourites": "1" if self.favourites else "",
            "sort": "" if self.sort == "newest" else self.sort,
        }
        return {k: v for k, v in pairs.items() if v}


def _parse_date(value: str, *, label: str, problems: list[str]) -> date | None:
    """A date in the supported range, or None with the reason added to `problems`."""
    value = value.strip()
    if not value:
        return None
    shown = value[:20]
    try:
        day = date.fromisoformat(value)
    except ValueError:
        problems.append(
            f"“{label}” date {shown} is not a date like 2026-01-31; it was ignored."
        )
        return None
    if not DATE_MIN <= day <= DATE_MAX:
        problems.append(
            f"“{label}” date {day.isoformat()} is out of range and was ignored. "
            + DATE_RANGE_HINT
        )
        return None
    return day


def _day_start(day: date) -> datetime:
    # Days are the viewer's days (S2V_TIME_ZONE); comparing instants, not
    # dates, lets the (team, -queued_at) index serve the range.
    return timezone.make_aware(datetime.combine(day, time.min))


def gallery_jobs(
    *, team: Team, filters: GalleryFilters, user: User | None = None
) -> QuerySet[GenerationJob]:
    """The team's jobs for the gallery, filtered and sorted, in one query.

    Each job carries `is_favourite` for `user`, so cards need no extra query.
    """
    jobs = GenerationJob.objects.filter(team=team).select_related("created_by", "audio")
    if user is not None:
        jobs = jobs.annotate(
            is_favourite=Exists(Favourite.objects.filter(user=user, job=OuterRef("pk")))
        )
    if filters.author:
        jobs = jobs.filter(created_by__username=filters.author)
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.review:
        jobs = jobs.filter(review_state=filters.review)
    if filters.resolution:
        jobs = jobs.filter(resolution=filters.resolution)
    if filters.provider:
        jobs = jobs.filter(provider=filters.provider)
    if filters.date_from:
        jobs = jobs.filter(queued_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        jobs = jobs.filter(queued_at__lt=_day_start(filters.date_to + timedelta(1)))
    if filters.favourites and user is not None:
        # A join, not EXISTS: SQLite starts from the user's few stars.
        jobs = jobs.filter(favourites__user=user)
    for word in filters.q.split():
        jobs = jobs.filter(Q(title__icontains=word) | Q(notes__icontains=word))
    return jobs.order_by(*_ordering(filters.sort))


def _ordering(sort: str) -> list[OrderBy | str]:
    fields = SORTS.get(sort, SORTS["newest"])[1]
    # Unfinished jobs have no duration or cost yet: they go last either way.
    return [
        F(name[1:]).desc(nulls_last=True)
        if name in ("-video_duration", "-cost")
        else F(name).asc(nulls_last=True)
        if name in ("video_duration", "cost")
        else name
        for name in fields
    ]


def gallery_card(*, team: Team, user: User, code: UUID) -> GenerationJob | None:
    """One job as a gallery card shows it (with `is_favourite`)."""
    return (
        gallery_jobs(team=team, filters=GalleryFilters(), user=user)
        .filter(code=code)
        .first()
    )


def provider_names() -> list[tuple[str, str]]:
    """Every provider a job may name, with its label, for the gallery's filter."""
    return [(name, catalog.provider_label(name)) for name in catalog.KNOWN]


def check_provider_name(provider: str, model: str = catalog.S2V) -> str:
    """Whose portrait check applies to a job on `provider`.

    An offer with a paid check of its own (DashScope's detect) is checked by
    that provider; every other offer by the studio's local check, whose
    verdicts are cached under "local" and so shared between those providers.
    """
    try:
        paid = bool(catalog.offer(provider, model).check_model)
    except catalog.UnknownChoice:
        return provider  # an old job's provider: its verdicts are under its name
    return provider if paid else "local"


def team_providers(*, team: Team) -> list[str]:
    """The enabled providers the team may use, the studio's default first."""
    allowed = set(team.allowed_providers or [])
    return [n for n in catalog.enabled_names() if not allowed or n in allowed]


def team_authors(*, team: Team) -> list[str]:
    return list(
        User.objects.filter(memberships__team=team)
        .order_by("username")
        .values_list("username", flat=True)
    )


def team_admins(*, team: Team) -> list[str]:
    """Usernames of the team's admins: whom to ask for what a role does not allow."""
    return list(
        User.objects.filter(
            memberships__team=team, memberships__role=Membership.Role.ADMIN
        )
        .order_by("username")
        .values_list("username", flat=True)
    )


def work_ratio(*, provider: str, resolution: str = "") -> float:
    """Seconds of processing per second of audio, from this instance's recent jobs.

    Remote providers use the provider-measured run times the dispatcher plans its
    polls and writes progress with, so the ETA and the progress bar agree.
    """
    if _remote(provider):
        learned = remote_ratio(provider_name=provider, resolution=resolution)
        return learned if learned is not None else first_guess(provider)
    recent = (
        GenerationJob.objects.filter(
            provider=provider,
            status=GenerationJob.Status.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .annotate(seconds=F("audio__duration"))
        .values_list("started_at", "finished_at", "seconds")[:HISTORY_SIZE]
    )
    ratios = [
        (finished - started).total_seconds() / seconds
        for started, finished, seconds in recent
        if seconds and started and finished
    ]
    return median(ratios) if ratios else DEFAULT_WORK_RATIO.get(provider, 1.0)


@dataclass(frozen=True, slots=True)
class JobProgress:
    position: int | None  # 1 = next to start
    eta_seconds: float | None  # until the video is ready
    fraction: float  # 0..1, measured or estimated


def queue_positions(*, provider: str) -> dict[int, int]:
    """Every queued job's place in line for an provider, in one query."""
    queued = (
        GenerationJob.objects.filter(
            provider=provider, status=GenerationJob.Status.QUEUED
        )
        .order_by("queued_at", "id")
        .values_list("id", flat=True)
    )
    return {job_id: place for place, job_id in enumerate(queued, start=1)}


def job_progress(*, job: GenerationJob) -> JobProgress:
    """Where a job stands: its place in line, a time estimate and a progress fraction."""
    if job.is_terminal:
        return JobProgress(
            position=None,
            eta_seconds=0.0,
            fraction=1.0 if job.status == GenerationJob.Status.SUCCEEDED else 0.0,
        )
    ratio = work_ratio(provider=job.provider, resolution=job.resolution)
    own = job.audio.duration * ratio
    if job.is_in_flight:
        fraction = job.progress
        if fraction <= 0 and job.started_at:
            elapsed = (timezone.now() - job.started_at).total_seconds()
            fraction = min(elapsed / own, 0.95) if own else 0.0
        return JobProgress(
            position=None, eta_seconds=max(own * (1 - fraction), 0.0), fraction=fraction
        )

    waiting, wait = _queue_ahead(
        provider=job.provider,
        ratio=ratio,
        before=(job.queued_at, job.pk),
    )
    return JobProgress(position=waiting + 1, eta_seconds=wait + own, fraction=0.0)


def _remote(provider: str) -> bool:
    try:
        return catalog.provider(provider).remote
    except catalog.UnknownChoice:
        return False


def _slots(provider: str) -> int:
    try:
        return max(catalog.provider(provider).concurrency, 1)
    except catalog.UnknownChoice:
        return 1


def _queue_ahead(
    *, provider: str, ratio: float, before: tuple[datetime, int] | None = None
) -> tuple[int, float]:
    """Jobs waiting for a provider (before a queued job, or all), and seconds until a slot.

    The work left of the waiting and running jobs, shared by the account's
    slots, at this instance's measured seconds of work per second of audio.
    """
    rows = GenerationJob.objects.filter(
        provider=provider,
        status__in=[GenerationJob.Status.QUEUED, *GenerationJob.IN_FLIGHT],
    )
    if before is not None:
        rows = rows.filter(queued_at__lte=before[0]).exclude(pk=before[1])
    ahead = list(
        rows.values_list("status", "audio__duration", "progress", "queued_at", "id")
    )
    waiting = [
        row
        for row in ahead
        if row[0] == GenerationJob.Status.QUEUED
        and (before is None or (row[3], row[4]) < before)
    ]
    running = [row for row in ahead if row[0] in GenerationJob.IN_FLIGHT]
    work = sum(d * ratio for _, d, _, _, _ in waiting)
    work += sum(d * ratio * (1 - p) for _, d, p, _, _ in running)
    return len(waiting), work / _slots(provider)


def expected_wait(*, provider: str, resolution: str, audio_seconds: float) -> float:
    """Seconds until a video submitted now would be ready: the queue, then its own run."""
    ratio = work_ratio(provider=provider, resolution=resolution)
    _, wait = _queue_ahead(provider=provider, ratio=ratio)
    return wait + audio_seconds * ratio


def queue_positions_all() -> dict[int, int]:
    """Every queued job's place in its provider's line, for every enabled provider."""
    positions: dict[int, int] = {}
    for name in catalog.enabled_names():
        positions |= queue_positions(provider=name)
    return positions


def widest_limits(names: Iterable[str], model: str = catalog.S2V) -> ProviderLimits:
    """Limits an input must meet to fit at least one of these providers' offers.

    The upload page keeps a clip that some choice can take and says, per
    choice, whether it fits. Formats are those every offer takes, so that a
    clip is converted when any of them needs it.
    """
    offers = [catalog.offer(n, model).limits for n in names]
    first = offers[0]
    return ProviderLimits(
        image_formats=frozenset.intersection(*(o.image_formats for o in offers)),
        image_min_side=max(o.image_min_side for o in offers),
        image_max_side=min(o.image_max_side for o in offers),
        audio_formats=frozenset.intersection(*(o.audio_formats for o in offers)),
        audio_max_seconds=max(o.audio_max_seconds for o in offers),
        audio_max_bytes=max(o.audio_max_bytes for o in offers),
        resolutions=tuple(
            r for r in first.resolutions if all(r in o.resolutions for o in offers)
        ),
        concurrency=first.concurrency,
        audio_min_seconds=min(o.audio_min_seconds for o in offers),
    )


@dataclass(frozen=True, slots=True)
class Choice:
    """One provider as the upload form offers it, with its estimate for these inputs."""

    name: str
    label: str
    remote: bool
    offer: catalog.Offer
    estimate: billing.Estimate
    wait_seconds: float
    queued: int  # jobs waiting for it now
    problems: tuple[str, ...]  # why the inputs do not fit it; empty when they do
    cheapest: bool = False
    soonest: bool = False

    @property
    def disabled(self) -> bool:
        return bool(self.problems)

    @property
    def paid_check(self) -> bool:
        return bool(self.offer.check_model)

    @property
    def takes_prompt(self) -> bool:
        return "prompt" in self.offer.takes

    @property
    def takes_seed(self) -> bool:
        return "seed" in self.offer.takes


def generation_choices(
    *,
    team: Team,
    model: str = catalog.S2V,
    resolution: str,
    audio_seconds: float | None,
    audio_size: int | None = None,
    portrait_sha256: str = "",
) -> list[Choice]:
    """The providers the team may use for a model, each with cost and wait, best marked.

    A paid portrait check is added where the check that applies has no
    verdict for this portrait yet. Without audio the estimate is for no
    seconds and nothing is marked.
    """
    from .services import audio_problems  # services import this module

    checked = (
        set(
            FaceCheck.objects.filter(sha256=portrait_sha256).values_list(
                "provider", flat=True
            )
        )
        if portrait_sha256
        else set()
    )
    choices: list[Choice] = []
    for name in team_providers(team=team):
        spec = catalog.provider(name)
        try:
            offer = spec.offer(model)
        except catalog.UnknownChoice:
            continue
        tier = resolution if resolution in offer.limits.resolutions else ""
        seconds = audio_seconds or 0.0
        problems: list[str] = []
        if not tier:
            problems.append(f"It does not make {resolution} videos.")
        if audio_seconds is not None:
            problems += audio_problems(
                duration=audio_seconds, size=audio_size, limits=offer.limits
            )
        queued, _ = _queue_ahead(provider=name, ratio=0.0)
        choices.append(
            Choice(
                name=name,
                label=spec.label,
                remote=spec.remote,
                offer=offer,
                estimate=billing.estimate(
                    provider=name,
                    model=model,
                    resolution=tier or resolution,
                    audio_seconds=seconds,
                    needs_check=check_provider_name(name, model) not in checked,
                ),
                wait_seconds=expected_wait(
                    provider=name, resolution=tier or resolution, audio_seconds=seconds
                ),
                queued=queued,
                problems=tuple(problems),
            )
        )
    usable = [c for c in choices if not c.disabled]
    if audio_seconds is None or len(usable) < 2:
        return choices
    cheapest = min(c.estimate.total for c in usable)
    soonest = min(c.wait_seconds for c in usable)
    return [
        replace(
            c,
            cheapest=not c.disabled and c.estimate.total == cheapest,
            soonest=not c.disabled and c.wait_seconds == soonest,
        )
        for c in choices
    ]


# -- spend ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendRow:
    label: str
    amount: Decimal
    seconds: Decimal
    count: int


class BadMonth(ValueError):
    """A month query parameter that cannot be used. The message says why."""


def jobs_marked_for_admin(*, team: Team | None) -> QuerySet[GenerationJob]:
    """Jobs whose submit answer was lost and that nobody could settle (all teams: None)."""
    jobs = GenerationJob.objects.filter(recovery=GenerationJob.Recovery.ADMIN)
    if team is not None:
        jobs = jobs.filter(team=team)
    return jobs.select_related("team", "created_by").order_by("-queued_at")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-11' -> the month's first moment and the next month's, in local time.

    An empty value means this month. Raises BadMonth for anything that is not
    a month like 2026-11 between DATE_MIN and DATE_MAX.
    """
    month = month.strip()
    if not month:
        start = billing.month_start()
    else:
        try:
            year, number = (int(part) for part in month.split("-"))
            first = date(year, number, 1)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadMonth(f"{month[:20]} is not a month like 2026-01.") from exc
        if not DATE_MIN <= first <= DATE_MAX:
            raise BadMonth(
                f"{month} is out of range. Months must be between "
                f"{DATE_MIN:%Y-%m} and {DATE_MAX:%Y-%m}."
            )
        start = timezone.make_aware(datetime.combine(first, time.min))
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def ledger(*, team: Team, start: datetime, end: datetime) -> QuerySet[LedgerEntry]:
    return (
        LedgerEntry.objects.filter(team=team, created_at__gte=start, created_at__lt=end)
        .select_related("user", "job")
        .order_by("created_at", "id")
    )


def spent_for_nothing(
    *, team: Team, start: datetime, end: datetime
) -> QuerySet[LedgerEntry]:
    """Billed generations whose video could not be saved: money to dispute."""
    return (
        LedgerEntry.objects.filter(
            team=team,
            kind=LedgerEntry.Kind.GENERATION,
            billed=True,
            job__status=GenerationJob.Status.FAILED,
            created_at__gte=start,
            created_at__lt=end,
        )
        .select_related("job")
        .order_by("created_at", "id")
    )


def outside_billing(*, days: int = 31) -> SpendRow:
    """What the reconciliation recorded as billed outside the studio lately."""
    totals = LedgerEntry.objects.filter(
        kind=LedgerEntry.Kind.OUTSIDE,
        created_at__gte=timezone.now() - timedelta(days=days),
    ).aggregate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
    return SpendRow(
        label=f"last {days} days",
        amount=totals["amount"] or Decimal(0),
        seconds=totals["seconds"] or Decimal(0),
        count=totals["count"],
    )


def spend_by(*, team: Team, start: datetime, end: datetime, by: str) -> list[SpendRow]:
    """Billed spend grouped by user, day, resolution, provider or kind."""
    billed = LedgerEntry.objects.filter(
        team=team, billed=True, created_at__gte=start, created_at__lt=end
    )
    key = {
        "user": "user__username",
        "day": "day",
        "resolution": "resolution",
        "provider": "provider",
        "kind": "kind",
    }[by]
    if by == "day":
        billed = billed.annotate(day=TruncDate("created_at"))
    rows = (
        billed.values(key)
        .annotate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
        .order_by(key)
    )
    # Providers by their catalog label, as every other page names them.
    name = catalog.provider_label if by == "provider" else str
    return [
        SpendRow(
            label=name(row[key]) if row[key] else "–",
            amount=row["amount"] or Decimal(0),
            seconds=row["seconds"] or Decimal(0),
            count=row["count"],
        )
        for row in rows
    ]


def spend_per_team(*, start: datetime, end: datetime) -> list[SpendRow]:
    rows = (
        LedgerEntry.objects.filter(
            billed=True, created_at__gte=start, created_at__lt=end
        )
        .values("team__name")
        .annotate(amount=Sum("amount"), seconds=Sum("seconds"), count=Count("id"))
        .order_by("team__name")
    )
    return [
        SpendRow(
            # Lines of no team: another application's tasks on the same key.
            row["team__name"] or "Outside the studio",
            row["amount"] or Decimal(0),
            row["seconds"] or Decimal(0),
            row["count"],
        )
        for row in rows
    ]


# -- one job's review, thread, variants and shares ------------------------------


@dataclass(frozen=True, slots=True)
class JobPanels:
    """What the detail page shows beside the video. A fixed number of queries."""

    is_favourite: bool
    reviews: list[JobReview]
    comments: list[JobComment]
    take: list[GenerationJob]  # the first job of the take and all its variants
    shares: list[ShareLink]


def job_panels(*, job: GenerationJob, user: User) -> JobPanels:
    take_id = job.take_id
    return JobPanels(
        is_favourite=Favourite.objects.filter(user=user, job=job).exists(),
        reviews=list(JobReview.objects.filter(job=job).select_related("reviewer")[:50]),
        comments=list(
            JobComment.objects.filter(job=job).select_related("author")[:500]
        ),
        take=list(
            GenerationJob.objects.filter(Q(pk=take_id) | Q(variant_of_id=take_id))
            .select_related("created_by")
            .order_by("queued_at", "id")[:50]
        ),
        shares=list(
            ShareLink.objects.filter(job=job).select_related(
                "created_by", "revoked_by"
            )[:50]
        ),
    )


def share_for_public(*, code: UUID) -> ShareLink | None:
    """An active share of a finished video, or None (expired, revoked, unapproved)."""
    share = (
        ShareLink.objects.select_related("job", "job__team")
        .filter(
            code=code,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            job__status=GenerationJob.Status.SUCCEEDED,
        )
        .first()
    )
    if share is None:
        return None
    # Approval taken back after sharing closes the link again.
    if share.job.team.approval_required and not share.job.is_approved:
        return None
    return share


# -- notifications ----------------------------------------------------------------

NOTIFICATIONS_SHOWN = 50


def notifications_for(*, user: User, team: Team) -> list[Notification]:
    return list(
        Notification.objects.filter(user=user, team=team).select_related(
            "job", "actor"
        )[:NOTIFICATIONS_SHOWN]
    )


def unread_count(*, user: User, team_id: int) -> int:
    return Notification.objects.filter(
        user=user, team_id=team_id, read_at__isnull=True
    ).count()
