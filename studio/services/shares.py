"""Share links: create, revoke, and the signed tokens in their URLs."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core import signing
from django.utils import timezone

from studio.models import GenerationJob, ShareLink, User

from .errors import Rejected
from .review import releasable

SHARE_DAYS = (1, 3, 7, 30, 90)


SHARE_SALT = "studio.share"


def share_create(*, job: GenerationJob, user: User, days: int) -> ShareLink:
    """A public link to one finished video. Raises Rejected if it may not leave the team."""
    if days not in SHARE_DAYS:
        raise Rejected("Choose how long the link works.")
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise Rejected("Only a finished video can be shared.")
    if not releasable(job):
        raise Rejected("This team shares only approved videos; ask a reviewer.")
    return ShareLink.objects.create(
        job=job, created_by=user, expires_at=timezone.now() + timedelta(days=days)
    )


def share_revoke(*, share: ShareLink, user: User) -> ShareLink:
    """Close a share link at once; revoking twice keeps the first time."""
    ShareLink.objects.filter(pk=share.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user
    )
    share.refresh_from_db()
    return share


def share_token(share: ShareLink) -> str:
    """The signed part of a share URL: the link's code and an HMAC of it."""
    return signing.Signer(salt=SHARE_SALT).sign(share.code.hex)


def share_code(token: str) -> uuid.UUID | None:
    """The code a share token names, or None if its signature does not match."""
    try:
        return uuid.UUID(hex=signing.Signer(salt=SHARE_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None
