"""The gallery's writes: stars, and the chosen videos for a zip download."""

from __future__ import annotations

import uuid

from studio.models import Favourite, GenerationJob, Team, User

from .errors import Rejected
from .review import releasable


def favourite_set(*, job: GenerationJob, user: User, on: bool) -> bool:
    """Star or unstar a job for one user; setting the same state twice is harmless."""
    if on:
        Favourite.objects.get_or_create(user=user, job=job)
    else:
        Favourite.objects.filter(user=user, job=job).delete()
    return on


def jobs_for_download(*, team: Team, codes: list[uuid.UUID]) -> list[GenerationJob]:
    """The chosen videos, in the order chosen, if all may be downloaded together.

    Raises Rejected (nothing chosen, not finished, not approved) and
    GenerationJob.DoesNotExist when a code is not one of the team's jobs.
    """
    if not codes:
        raise Rejected("Choose at least one video to download.")
    jobs = {
        job.code: job
        for job in GenerationJob.objects.filter(team=team, code__in=codes)
        .select_related("team")
        .only(
            "code",
            "title",
            "resolution",
            "status",
            "review_state",
            "video",
            "team__approval_required",
        )
    }
    if len(jobs) != len(set(codes)):
        raise GenerationJob.DoesNotExist
    chosen = [jobs[code] for code in dict.fromkeys(codes)]
    unfinished = [j for j in chosen if j.status != GenerationJob.Status.SUCCEEDED]
    if unfinished:
        raise Rejected(
            "Only finished videos can be downloaded: "
            + ", ".join(j.display_title for j in unfinished)
            + "."
        )
    unapproved = [j for j in chosen if not releasable(j)]
    if unapproved:
        raise Rejected(
            "This team downloads only approved videos together. Not approved yet: "
            + ", ".join(j.display_title for j in unapproved)
            + "."
        )
    return chosen
