"""One job's panels: its reviews, comments, variants and shares, and the viewer's star."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from studio.models import (
    Favourite,
    GenerationJob,
    JobComment,
    JobReview,
    ShareLink,
    User,
)


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
