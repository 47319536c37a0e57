"""What a job is made from: portraits, audio clips, reference videos, portrait checks."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.db import models
from django.urls import reverse

from studio.formats import POSTER_FORMAT, VIDEO_FORMAT, suffix_for

from .teams import Team

if TYPE_CHECKING:
    from .jobs import GenerationJob


def _upload_name(
    folder: str,
    instance: Portrait | AudioClip | VideoClip | GenerationJob,
    suffix: str,
) -> str:
    # Random names: nothing about the user's file name leaks into storage paths.
    return f"teams/{instance.team.code}/{folder}/{uuid.uuid4().hex}{suffix}"


# Inputs take their suffix from the verified format, never from the upload's
# name: a PNG that is also an HTML page is stored as .png (see studio.formats).
def portrait_upload_to(instance: Portrait, filename: str) -> str:
    return _upload_name("portraits", instance, suffix_for(instance.format))


def audio_upload_to(instance: AudioClip, filename: str) -> str:
    return _upload_name("audio", instance, suffix_for(instance.format))


def video_upload_to(instance: VideoClip, filename: str) -> str:
    return _upload_name("videos", instance, suffix_for(instance.format))


# The poster and preview are made by the studio, so their formats are known.
def video_poster_upload_to(instance: VideoClip, filename: str) -> str:
    return _upload_name("videos", instance, suffix_for(POSTER_FORMAT))


def video_preview_upload_to(instance: VideoClip, filename: str) -> str:
    return _upload_name("videos", instance, suffix_for(VIDEO_FORMAT))


class FaceCheck(models.Model):
    """A portrait verdict, cached per image content and provider: never checked twice."""

    sha256 = models.CharField(max_length=64)
    provider = models.CharField(max_length=32)
    check_pass = models.BooleanField()
    humanoid = models.BooleanField()
    reason = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)
    face_box = models.JSONField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sha256", "provider"], name="one_check_per_image_provider"
            )
        ]

    def __str__(self) -> str:
        outcome = "pass" if self.check_pass else (self.reason or "fail")
        return f"{self.sha256[:12]} on {self.provider}: {outcome}"


class InputFile(models.Model):
    """What every input kind shares: a team's upload, kept under a code."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    # The verified format of the stored file (Pillow's "JPEG", "PNG", ... or the
    # probed container "wav", "mp3", ...): it alone decides the stored name's
    # suffix and the type the file is served as.
    format = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    # The URL name that serves the file to the owning team.
    url_name: ClassVar[str]

    if TYPE_CHECKING:  # each kind declares its own, for its own folder
        file: models.FileField

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.original_name or str(self.code)

    def get_absolute_url(self) -> str:
        return reverse(self.url_name, args=[self.code])


class Portrait(InputFile):
    team = models.ForeignKey(Team, models.CASCADE, related_name="portraits")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="portraits"
    )
    file = models.FileField(upload_to=portrait_upload_to, max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    url_name = "studio:portrait-file"


class AudioClip(InputFile):
    team = models.ForeignKey(Team, models.CASCADE, related_name="audio_clips")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="audio_clips"
    )
    # The file every provider receives: the upload itself, or its WAV conversion.
    file = models.FileField(upload_to=audio_upload_to, max_length=255)
    original_format = models.CharField(max_length=16)
    duration = models.FloatField()
    sample_rate = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()

    url_name = "studio:audio-file"

    @property
    def converted(self) -> bool:
        return self.original_format != self.format


class VideoClip(InputFile):
    """A reference video (the animate models' input), with a poster and a preview.

    `file` is what every provider receives: the upload itself, or its MP4
    conversion (`format` is the stored file's container, `original_format`
    the upload's); `sha256` is of the upload as it arrived, so the same file
    is recognised again.
    """

    team = models.ForeignKey(Team, models.CASCADE, related_name="video_clips")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="video_clips"
    )
    file = models.FileField(upload_to=video_upload_to, max_length=255)
    original_format = models.CharField(max_length=16)
    codec = models.CharField(max_length=32)
    duration = models.FloatField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    fps = models.FloatField()
    has_audio = models.BooleanField()
    poster = models.FileField(upload_to=video_poster_upload_to, max_length=255)
    # The first few seconds, small and silent, for the upload page to loop.
    preview = models.FileField(upload_to=video_preview_upload_to, max_length=255)

    url_name = "studio:video-file"

    @property
    def converted(self) -> bool:
        return self.original_format != self.format
