"""Reviews and comments, who may review or change a job, and what may leave the team."""

from __future__ import annotations

from django.db import transaction

from studio import notifications
from studio.models import GenerationJob, JobComment, JobReview, Membership, User

from .errors import Rejected

COMMENT_MAX = 4000


REVIEW_ROLES = (Membership.Role.REVIEWER, Membership.Role.ADMIN)


def can_review(membership: Membership) -> bool:
    return membership.role in REVIEW_ROLES


def can_change_job(*, membership: Membership, job: GenerationJob) -> bool:
    """Cancel, rename, notes and share revocation: the author, reviewers and admins."""
    return job.created_by_id == membership.user_id or can_review(membership)


def releasable(job: GenerationJob) -> bool:
    """Whether a video may leave the team: shared, or downloaded with others."""
    if job.status != GenerationJob.Status.SUCCEEDED:
        return False
    return job.is_approved or not job.team.approval_required


def job_review(
    *, job: GenerationJob, membership: Membership, decision: str, comment: str = ""
) -> JobReview:
    """Approve a video or request changes, and tell its author.

    Raises Rejected for members without the reviewer role, for videos that are
    not finished, and for a change request without a comment.
    """
    if not can_review(membership):
        raise Rejected("Only reviewers and admins can review videos.", code="role")
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise Rejected("Only a finished video can be reviewed.")
    if decision not in (
        GenerationJob.ReviewState.APPROVED,
        GenerationJob.ReviewState.CHANGES,
    ):
        raise Rejected("Choose approve or request changes.")
    comment = comment.strip()[:COMMENT_MAX]
    if decision == GenerationJob.ReviewState.CHANGES and not comment:
        raise Rejected("Say what should change: a change request needs a comment.")
    with transaction.atomic():
        review = JobReview.objects.create(
            job=job, reviewer=membership.user, decision=decision, comment=comment
        )
        GenerationJob.objects.filter(pk=job.pk).update(review_state=decision)
        job.review_state = decision
        notifications.notify_reviewed(review)
    return review


def job_comment(*, job: GenerationJob, user: User, text: str) -> JobComment:
    """Add plain text to a video's thread and tell its author. Raises Rejected if empty."""
    text = text.strip()
    if not text:
        raise Rejected("Write something first.")
    if len(text) > COMMENT_MAX:
        raise Rejected(f"Keep it under {COMMENT_MAX} characters.")
    with transaction.atomic():
        comment = JobComment.objects.create(job=job, author=user, text=text)
        notifications.notify_commented(comment)
    return comment
