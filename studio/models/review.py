"""Gallery, review and hand-off: favourites, reviews, comments, share links."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from .jobs import GenerationJob


class Favourite(models.Model):
    """A user's star on a job; favourites are per user, not per team."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="favourites"
    )
    job = models.ForeignKey(GenerationJob, models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "job"], name="one_star_per_job")
        ]

    def __str__(self) -> str:
        return f"{self.user} ★ {self.job}"


class JobReview(models.Model):
    """One reviewer's decision on a video: the history of who did what."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(GenerationJob, models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="reviews"
    )
    decision = models.CharField(
        max_length=16,
        choices=[
            (GenerationJob.ReviewState.APPROVED, "Approved"),
            (GenerationJob.ReviewState.CHANGES, "Requested changes"),
        ],
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.reviewer}: {self.decision} on {self.job}"


class JobComment(models.Model):
    """Plain text on a video's thread; shown escaped, never as HTML."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(GenerationJob, models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="job_comments"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.author} on {self.job}: {self.text[:40]}"


class ShareLink(models.Model):
    """A public, signed link to one video, until it expires or is revoked.

    The URL carries the code signed with the secret key (see
    services.share_token), so a link cannot be guessed from a code alone.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(GenerationJob, models.CASCADE, related_name="shares")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="shares"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Share of {self.job} until {self.expires_at:%Y-%m-%d %H:%M}"

    def is_active(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())
