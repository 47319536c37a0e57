"""The gallery's reads: filters, sorts, date bounds, pages and single cards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from uuid import UUID

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.utils import timezone

from studio.models import Favourite, GenerationJob, Team, User

from .providers import provider_names

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
