"""What a user should know about their videos (the in-app inbox)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from .jobs import GenerationJob
from .teams import Team


class Notification(models.Model):
    """Something a user should know about one of their videos, in one team."""

    class Kind(models.TextChoices):
        JOB_SUCCEEDED = "job_succeeded", "Video ready"
        JOB_FAILED = "job_failed", "Video failed"
        APPROVED = "approved", "Approved"
        CHANGES = "changes", "Changes requested"
        COMMENT = "comment", "Comment"

    FINISHED = (Kind.JOB_SUCCEEDED, Kind.JOB_FAILED)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="notifications"
    )
    team = models.ForeignKey(Team, models.CASCADE, related_name="notifications")
    job = models.ForeignKey(
        GenerationJob, models.CASCADE, null=True, blank=True, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    kind = models.CharField(max_length=16, choices=Kind)
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "team", "read_at"], name="notification_inbox")
        ]
        constraints = [
            # A job ends once: the worker and the sweep may both report it.
            models.UniqueConstraint(
                fields=["job", "kind"],
                condition=models.Q(kind__in=["job_succeeded", "job_failed"]),
                name="one_finish_notice_per_job",
            )
        ]

    def __str__(self) -> str:
        return f"To {self.user}: {self.message}"
