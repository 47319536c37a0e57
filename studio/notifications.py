"""In-app notifications and the same by email.

Every notice goes to one user about one of their videos, in the team the video
belongs to. Email goes through Django's email backend (console unless SMTP is
configured) once the notice is committed, and a broken mail server never
breaks the write that caused it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import GenerationJob, JobComment, JobReview, Notification, User

log = logging.getLogger(__name__)


def notify_job_finished(job_id: int) -> Notification | None:
    """Tell a job's author that it succeeded or failed. Safe to call more than once.

    Called wherever a job may have reached a terminal state; it reads the job's
    current status, so a caller whose conditional update matched nothing sends
    nothing wrong. Canceled jobs are not announced: someone chose to cancel them.
    """
    job = (
        GenerationJob.objects.select_related("created_by", "team")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        return None
    if job.status == GenerationJob.Status.SUCCEEDED:
        kind = Notification.Kind.JOB_SUCCEEDED
        message = f"“{job.display_title}” is ready."
    elif job.status == GenerationJob.Status.FAILED:
        kind = Notification.Kind.JOB_FAILED
        message = (
            f"“{job.display_title}” failed: {job.error_message or 'no reason given'}"
        )
    else:
        return None
    if Notification.objects.filter(job=job, kind=kind).exists():
        return None
    try:
        with transaction.atomic():
            return _notify(user=job.created_by, job=job, kind=kind, message=message)
    except IntegrityError:  # another process announced it first
        return None


def notify_reviewed(review: JobReview) -> Notification | None:
    job, reviewer = review.job, review.reviewer
    if review.decision == GenerationJob.ReviewState.APPROVED:
        kind, verb = Notification.Kind.APPROVED, "approved"
    else:
        kind, verb = Notification.Kind.CHANGES, "requested changes on"
    message = f"{_name(reviewer)} {verb} “{job.display_title}”"
    if review.comment:
        message += f": {review.comment}"
    return _notify_author(job=job, actor=reviewer, kind=kind, message=message)


def notify_commented(comment: JobComment) -> Notification | None:
    job = comment.job
    message = (
        f"{_name(comment.author)} commented on “{job.display_title}”: {comment.text}"
    )
    return _notify_author(
        job=job, actor=comment.author, kind=Notification.Kind.COMMENT, message=message
    )


def _notify_author(
    *, job: GenerationJob, actor: User, kind: str, message: str
) -> Notification | None:
    # Nobody needs to be told about what they did themselves.
    if job.created_by_id == actor.pk:
        return None
    return _notify(
        user=job.created_by, job=job, kind=kind, message=message, actor=actor
    )


def _notify(
    *,
    user: User,
    job: GenerationJob,
    kind: str,
    message: str,
    actor: User | None = None,
) -> Notification:
    notice = Notification.objects.create(
        user=user,
        team_id=job.team_id,
        job=job,
        actor=actor,
        kind=kind,
        message=message[:300],
    )
    if user.email:
        transaction.on_commit(lambda: _send_email(notice, job), robust=True)
    return notice


def _send_email(notice: Notification, job: GenerationJob) -> None:
    base = settings.S2V_PUBLIC_BASE_URL
    link = f"{base}{job.get_absolute_url()}" if base else job.get_absolute_url()
    body = f"{notice.message}\n\nOpen it in S2V Studio: {link}\n"
    try:
        send_mail(
            # One line: comments may hold line breaks, which headers may not.
            subject=" ".join(notice.message.split())[:120],
            message=body,
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=[notice.user.email],
        )
    except Exception:
        log.exception("could not email notification %s", notice.pk)


def mark_all_read(*, user: User, team_id: int) -> int:
    """Mark a user's notices in one team as read. Returns how many changed."""
    return Notification.objects.filter(
        user=user, team_id=team_id, read_at__isnull=True
    ).update(read_at=timezone.now())


def _name(user: User) -> str:
    return user.get_full_name() or user.username
