from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from .formats import suffix_for
from .providers.base import TaskState


class User(AbstractUser):
    pass


class Team(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    # Videos must be approved by a reviewer before they are shared or
    # downloaded together.
    approval_required = models.BooleanField(default=False)
    # Provider names (catalog) the team's members may use; empty means every
    # enabled one. Budgets apply whichever is used.
    allowed_providers = models.JSONField(default=list, blank=True)
    members: models.ManyToManyField[User, Membership] = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        REVIEWER = "reviewer", "Reviewer"
        ADMIN = "admin", "Admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "team"], name="one_membership_per_team"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


def _upload_name(
    folder: str, instance: Portrait | AudioClip | GenerationJob, suffix: str
) -> str:
    # Random names: nothing about the user's file name leaks into storage paths.
    return f"teams/{instance.team.code}/{folder}/{uuid.uuid4().hex}{suffix}"


# Inputs take their suffix from the verified format, never from the upload's
# name: a PNG that is also an HTML page is stored as .png (see studio.formats).
def portrait_upload_to(instance: Portrait, filename: str) -> str:
    return _upload_name("portraits", instance, suffix_for(instance.format))


def audio_upload_to(instance: AudioClip, filename: str) -> str:
    return _upload_name("audio", instance, suffix_for(instance.format))


def result_upload_to(instance: GenerationJob, filename: str) -> str:
    # Results are named by the studio itself ("video.mp4", "poster.jpg").
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return _upload_name("results", instance, suffix)


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


class Portrait(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, models.CASCADE, related_name="portraits")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="portraits"
    )
    file = models.FileField(upload_to=portrait_upload_to, max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    # Pillow's format of the stored file ("JPEG", "PNG", ...): it alone decides
    # the stored name's suffix and the type the file is served as.
    format = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.original_name or str(self.code)

    def get_absolute_url(self) -> str:
        return reverse("studio:portrait-file", args=[self.code])


class AudioClip(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, models.CASCADE, related_name="audio_clips")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="audio_clips"
    )
    # The file every provider receives: the upload itself, or its WAV conversion.
    file = models.FileField(upload_to=audio_upload_to, max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    original_format = models.CharField(max_length=16)
    # The probed container of the stored file ("wav", "mp3", ...): it alone
    # decides the stored name's suffix and the type the file is served as.
    format = models.CharField(max_length=16)
    sha256 = models.CharField(max_length=64, db_index=True)
    duration = models.FloatField()
    size = models.PositiveBigIntegerField()
    sample_rate = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.original_name or str(self.code)

    def get_absolute_url(self) -> str:
        return reverse("studio:audio-file", args=[self.code])

    @property
    def converted(self) -> bool:
        return self.original_format != self.format


class GenerationJob(models.Model):
    """One portrait + one audio clip -> one talking-portrait video.

    State transitions:
        QUEUED -> SUBMITTED      a worker claimed it (or sent it to a remote provider)
        SUBMITTED -> RUNNING     rendering started (or the provider says RUNNING)
        RUNNING -> SUCCEEDED     the video is in our storage
        QUEUED | SUBMITTED | RUNNING -> FAILED
        QUEUED -> CANCELED       the user canceled before any work started
        SUBMITTED | RUNNING -> QUEUED
                                 the sweep took back a job whose worker died,
                                 while it has attempts left (else -> FAILED)
        SUBMITTED (task id lost) -> SUBMITTED with a task id (adopted from the
                                 listing) | QUEUED (the listing shows no task) |
                                 FAILED with recovery=admin (nobody can tell)
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUBMITTED = "submitted", "Starting"
        RUNNING = "running", "Generating"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    class Resolution(models.TextChoices):
        P480 = "480P", "480P"
        P720 = "720P", "720P"

    class Recovery(models.TextChoices):
        # A submit whose answer (the task id) was lost: see dispatcher.sweep_remote.
        NONE = "", "None"
        CHECKING = "checking", "Checking with the provider"
        ADMIN = "admin", "Marked for an admin"

    class ReviewState(models.TextChoices):
        NONE = "none", "Not reviewed"
        APPROVED = "approved", "Approved"
        CHANGES = "changes", "Changes requested"

    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})
    IN_FLIGHT = frozenset({Status.SUBMITTED, Status.RUNNING})

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="jobs"
    )
    title = models.CharField(max_length=120, blank=True)
    portrait = models.ForeignKey(Portrait, models.PROTECT, related_name="jobs")
    audio = models.ForeignKey(AudioClip, models.PROTECT, related_name="jobs")
    resolution = models.CharField(
        max_length=8, choices=Resolution, default=Resolution.P480
    )
    provider = models.CharField(max_length=32)
    # The catalog's model id (studio.catalog.MODELS) and the parameters beyond
    # the tier that the provider takes (prompt, seed), as the form sent them.
    model = models.CharField(max_length=32, default="s2v")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=Status, default=Status.QUEUED, db_index=True
    )
    retry_of = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    remote_task_id = models.CharField(max_length=128, blank=True, db_index=True)
    # The provider's last word on the task (PENDING, RUNNING, SUCCEEDED, ...).
    # A task the provider has finished no longer holds the account's slot, even
    # while its result is still being copied into our storage.
    remote_status = models.CharField(max_length=16, blank=True)
    result_url = models.URLField(max_length=2000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    polls = models.PositiveIntegerField(default=0)

    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The task-queue cluster running the current attempt (QueueCluster.name), so
    # the attempt can be taken back as soon as that cluster is known dead.
    worker = models.CharField(max_length=100, blank=True, db_index=True)
    # Remote providers: when the submit began (to find a task a crash lost the id
    # of), when the provider started running it, and when to ask next.
    submit_started_at = models.DateTimeField(null=True, blank=True)
    # When the request that creates the paid task went out: before it, a job
    # taken back costs nothing; after it, the provider may have made the task.
    submit_posted_at = models.DateTimeField(null=True, blank=True)
    remote_started_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Queued again after a throttled or failed submit: not before this moment.
    not_before = models.DateTimeField(null=True, blank=True)
    # A submit whose task id never came back: being checked against the provider's
    # listing, or marked for an admin (the provider may have made and billed it).
    recovery = models.CharField(
        max_length=16, choices=Recovery, default=Recovery.NONE, blank=True
    )
    recovery_at = models.DateTimeField(null=True, blank=True)
    # The provider's own times (provider-api.md §1.6): when it started running
    # the task and when it ended it. Null when it did not say.
    provider_scheduled_at = models.DateTimeField(null=True, blank=True)
    provider_ended_at = models.DateTimeField(null=True, blank=True)
    # Seconds the provider took from RUNNING to done: the history ETAs and polls
    # learn from. From the provider's times when it gave both; otherwise from
    # when the studio noticed, which overstates it by up to a poll interval.
    remote_seconds = models.FloatField(null=True, blank=True)

    billed_seconds = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True
    )
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    # What the form estimated and what was held against the budget at submit.
    estimate = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    # An admin let this one job past the budget.
    budget_override = models.BooleanField(default=False)

    video = models.FileField(upload_to=result_upload_to, max_length=255, blank=True)
    poster = models.FileField(upload_to=result_upload_to, max_length=255, blank=True)
    video_duration = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)

    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    # Gallery and review. The review state is the latest JobReview's decision,
    # kept here so the gallery filters on it without a join.
    notes = models.TextField(blank=True)
    review_state = models.CharField(
        max_length=16, choices=ReviewState, default=ReviewState.NONE
    )
    # Every variant points at the first job of its take (never at a variant).
    variant_of = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="variants"
    )

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-queued_at"], name="job_team_recent"),
            # The gallery's filters and sorts over a team's thousands of jobs
            # (benchmarks/gallery_benchmark.py), and every queue position.
            models.Index(
                fields=["team", "status", "-queued_at"], name="job_team_status"
            ),
            models.Index(
                fields=["team", "review_state", "-queued_at"], name="job_team_review"
            ),
            models.Index(fields=["team", "video_duration"], name="job_team_duration"),
            models.Index(fields=["team", "cost"], name="job_team_cost"),
            models.Index(fields=["provider", "status", "queued_at"], name="job_queue"),
        ]

    def __str__(self) -> str:
        return self.display_title

    def get_absolute_url(self) -> str:
        return reverse("studio:job-detail", args=[self.code])

    @property
    def display_title(self) -> str:
        return self.title or f"Video {str(self.code)[:8]}"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def is_in_flight(self) -> bool:
        return self.status in self.IN_FLIGHT

    @property
    def can_cancel(self) -> bool:
        # A task still PENDING at the provider can be withdrawn; a RUNNING one not.
        # A job whose task id was lost cannot: its task may run and be billed.
        return self.status == self.Status.QUEUED or (
            self.status == self.Status.SUBMITTED
            and self.remote_state in (None, TaskState.PENDING)
            and not self.recovery
        )

    @property
    def can_retry(self) -> bool:
        return self.status in (self.Status.FAILED, self.Status.CANCELED)

    @property
    def paid_for_nothing(self) -> bool:
        """The provider billed this job's task (§3.3), but the video could not be saved.

        Its link expired before the copy, or the copy could not be read: money
        spent for nothing, charged and shown to admins to dispute.
        """
        return (
            self.status == self.Status.FAILED
            and self.remote_state == TaskState.SUCCEEDED
        )

    @property
    def remote_state(self) -> TaskState | None:
        """What the provider's last word on the task means; None before it said any."""
        from studio.providers import task_state  # providers read these models

        return task_state(self.provider, self.remote_status)

    @property
    def is_approved(self) -> bool:
        return self.review_state == self.ReviewState.APPROVED

    @property
    def take_id(self) -> int:
        """The first job of this job's take: itself unless it is a variant."""
        return self.variant_of_id or self.pk

    def param(self, name: str, default: str = "") -> str:
        """A parameter as the form shows it ("" when the job has none)."""
        value = (self.params or {}).get(name)
        return default if value is None else str(value)

    @property
    def elapsed(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class ProviderAccount(models.Model):
    """One provider account (one API key's account): its pause state.

    Errors about the account itself (bad key, arrears, no access) pause all
    dispatching to it; admins see why on every page until it is fixed.
    """

    provider = models.CharField(max_length=32, unique=True)
    paused_code = models.CharField(max_length=64, blank=True)
    paused_message = models.TextField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    # While paused, dispatching tries once more at this time, in case it was fixed.
    retry_at = models.DateTimeField(null=True, blank=True)
    last_dispatch_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.provider} ({'paused' if self.is_paused else 'active'})"

    @property
    def is_paused(self) -> bool:
        return bool(self.paused_at)


class RemoteUpload(models.Model):
    """A provider-side temporary copy of an input, reused while it is valid."""

    account = models.CharField(max_length=64)  # a fingerprint of the API key
    model = models.CharField(max_length=64)
    sha256 = models.CharField(max_length=64)
    url = models.CharField(max_length=1000)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "model", "sha256"], name="upload_lookup")
        ]

    def __str__(self) -> str:
        return self.url


class Price(models.Model):
    """One line of the price table: what a unit of a provider's model costs.

    Seeded from provider-api.md; admins edit it. A price applies from
    `valid_from` until `valid_to` (open-ended when empty).
    """

    class Unit(models.TextChoices):
        IMAGE = "image", "per image"
        SECOND = "second", "per second"

    provider = models.CharField(
        max_length=32
    )  # the provider name: dashscope, local, ...
    model = models.CharField(max_length=64)
    unit = models.CharField(max_length=8, choices=Unit)
    resolution = models.CharField(
        max_length=8, blank=True
    )  # empty for per-image prices
    currency = models.CharField(max_length=3)
    unit_price = models.DecimalField(max_digits=12, decimal_places=6)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["provider", "model", "resolution", "currency", "-valid_from"]
        indexes = [
            models.Index(
                fields=["provider", "model", "unit", "currency"], name="price_lookup"
            )
        ]

    def __str__(self) -> str:
        tier = f" {self.resolution}" if self.resolution else ""
        return f"{self.provider} {self.model}{tier}: {self.unit_price} {self.currency} {self.get_unit_display()}"


class LedgerEntry(models.Model):
    """Append-only record of money: every billable call, and every hold and release.

    Amounts are Decimal with 6 places, rounded half-up once, when the entry is
    written (studio.billing.amount_for). Charges and holds are positive; a
    release is the negative of the hold it ends. Entries are never changed.
    """

    class Kind(models.TextChoices):
        CHECK = "check", "Portrait check"
        GENERATION = "generation", "Generation"
        HOLD = "hold", "Hold"
        RELEASE = "release", "Release"
        # Found by the reconciliation: billed by the provider, unknown to the
        # studio (another application on the key) or more than the studio knew.
        OUTSIDE = "outside", "Billed outside the studio"

    # Empty only for money billed outside the studio that no team's job made.
    team = models.ForeignKey(
        Team, models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger",
    )
    job = models.ForeignKey(
        GenerationJob, models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    # The provider task a generation line charges (its remote_id is on the line).
    task = models.ForeignKey(
        "Task", models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    kind = models.CharField(max_length=16, choices=Kind)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=64)
    resolution = models.CharField(max_length=8, blank=True)
    unit = models.CharField(max_length=8, choices=Price.Unit)
    quantity = models.DecimalField(max_digits=12, decimal_places=3)
    unit_price = models.DecimalField(max_digits=12, decimal_places=6)
    amount = models.DecimalField(max_digits=14, decimal_places=6)
    currency = models.CharField(max_length=3)
    seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    billed = models.BooleanField(default=False)
    reason = models.CharField(max_length=255, blank=True)
    remote_id = models.CharField(
        max_length=128, blank=True
    )  # provider task or request id
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A job is held, released and charged once each, however often the
            # code that finishes it runs.
            models.UniqueConstraint(
                fields=["job", "kind"],
                condition=models.Q(kind__in=["hold", "release", "generation"]),
                name="one_money_entry_per_job_and_kind",
            ),
            # A reconciliation run twice records a provider's task once.
            models.UniqueConstraint(
                fields=["remote_id"],
                condition=models.Q(kind="outside"),
                name="one_outside_entry_per_task",
            ),
        ]
        indexes = [models.Index(fields=["team", "created_at"], name="ledger_team_time")]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Ledger entries are append-only.")
        super().save(*args, **kwargs)


class Task(models.Model):
    """One unit of work at a provider for a job: a whole clip (index 0) or a segment.

    Every task a job ever had is kept (a retry makes a new one), so the
    reconciliation tells the account's other tasks apart by these. `state` is
    what the studio reads; `remote_status` is the provider's own word, kept
    for display and the ledger. Written wherever a task id is saved and when
    the provider answers (studio.reconcile.remember_task).
    """

    class State(models.TextChoices):
        PENDING = TaskState.PENDING.value, "Pending"
        RUNNING = TaskState.RUNNING.value, "Running"
        SUCCEEDED = TaskState.SUCCEEDED.value, "Succeeded"
        FAILED = TaskState.FAILED.value, "Failed"
        CANCELED = TaskState.CANCELED.value, "Canceled"
        EXPIRED = TaskState.EXPIRED.value, "Expired"

    job = models.ForeignKey(
        GenerationJob, models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    # The segment of the job's audio this task makes; 0 for a whole clip.
    index = models.PositiveSmallIntegerField(default=0)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=64, blank=True)  # the provider's name for it
    account = models.CharField(max_length=64)  # a fingerprint of the API key
    # Empty while the submit has not brought an id back (or lost it).
    remote_id = models.CharField(max_length=128, blank=True)
    state = models.CharField(max_length=16, choices=State, default=State.PENDING)
    remote_status = models.CharField(max_length=16, blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)
    submit_started_at = models.DateTimeField(null=True, blank=True)
    submit_posted_at = models.DateTimeField(null=True, blank=True)
    # When it started running and ended, as the studio saw them.
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The same, by the provider's own clock, when it said so.
    provider_scheduled_at = models.DateTimeField(null=True, blank=True)
    provider_ended_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    billed_seconds = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True
    )
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    result_url = models.URLField(max_length=2000, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "remote_id"],
                condition=~models.Q(remote_id=""),
                name="one_record_per_remote_task",
            )
        ]

    def __str__(self) -> str:
        return f"{self.remote_id or 'unsent'} ({self.remote_status or self.state})"

    @property
    def is_active(self) -> bool:
        return TaskState(self.state).active


class Reconciliation(models.Model):
    """One comparison of the provider account's task listing with the studio's records.

    `findings` holds one dict per task worth a look: unknown to the studio, or
    whose state or billed seconds disagree (studio.reconcile.Finding).
    """

    provider = models.CharField(max_length=32)
    account = models.CharField(max_length=64)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    tasks_found = models.PositiveIntegerField(default=0)
    entries_recorded = models.PositiveIntegerField(default=0)
    findings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Reconciliation of {self.provider} at {self.started_at:%Y-%m-%d %H:%M}"


class Budget(models.Model):
    """Monthly limits for a team (user empty) or for one member within a team."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="budgets")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
    )
    monthly_amount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Money per calendar month in the site currency; empty means no limit.",
        validators=[
            MinValueValidator(
                Decimal(0),
                message="A budget cannot be negative. Enter 0 to stop all spending, "
                "or leave it empty for no limit.",
            )
        ],
    )
    monthly_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds of video per month; empty means no limit.",
    )
    max_resolution = models.CharField(
        max_length=8,
        blank=True,
        choices=GenerationJob.Resolution,
        help_text="Highest resolution allowed; empty means any.",
    )
    max_waiting_jobs = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Most jobs one user may have waiting or running.",
    )
    # Team rows only: refuse work past the limit (on), or only warn (off).
    stop_at_limit = models.BooleanField(default=True)
    # The highest alert (80 or 100 %) already sent, and for which month.
    alerted_level = models.PositiveSmallIntegerField(default=0)
    alerted_month = models.CharField(max_length=7, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "user"], name="one_budget_per_member"
            ),
            models.UniqueConstraint(
                fields=["team"],
                condition=models.Q(user__isnull=True),
                name="one_team_budget",
            ),
        ]

    def __str__(self) -> str:
        return f"Budget of {self.user or 'the team'} in {self.team}"


# -- gallery, review and hand-off ---------------------------------------------


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


class QueueCluster(models.Model):
    """A django-q2 cluster on the ORM broker, as its sentinel last reported.

    A row whose beat is stale, or whose process on this host is gone, is a dead
    cluster: its messages are released and its jobs taken back
    (studio.broker.release_dead_clusters), then the row is deleted.
    """

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid} on {self.host})"


class QueueLease(models.Model):
    """Which cluster took an ORM-broker message (django_q's OrmQ row), and when.

    `lock` is the OrmQ lock the cluster set, so releasing the message cannot
    undo a later delivery of it.
    """

    message_id = models.BigIntegerField(unique=True)
    cluster = models.CharField(max_length=100, db_index=True)
    lock = models.DateTimeField()

    def __str__(self) -> str:
        return f"message {self.message_id} held by {self.cluster}"
