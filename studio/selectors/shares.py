"""The share link a public URL opens, if it is still active."""

from __future__ import annotations

from uuid import UUID

from django.utils import timezone

from studio.models import GenerationJob, ShareLink


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
