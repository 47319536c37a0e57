"""What a user asked for (GenerationJob) and its units of work at a provider (Task)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from studio.providers.base import TaskState

from .inputs import AudioClip, Portrait, _upload_name
from .teams import Team


def result_upload_to(instance: GenerationJob, filename: str) -> str:
    # Results are named by the studio itself ("video.mp4", "poster.jpg").
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return _upload_name("results", instance, suffix)


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
        # A submit whose answer (the task id) was lost: see studio.queue.recovery.
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
    # The task the current attempt follows: opened when the queue or a worker
    # claimed the job (or the record of its task id, made again if it was
    # lost). Its earlier tasks stay in `tasks`.
    task = models.ForeignKey(
        "Task", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    remote_task_id = models.CharField(max_length=128, blank=True, db_index=True)
    # The provider's last word on the current task (PENDING, RUNNING, ...), as
    # the job's pages show it; the queue counts slots by Task.state.
    remote_status = models.CharField(max_length=16, blank=True)
    result_url = models.URLField(max_length=2000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    progress = models.FloatField(default=0.0)

    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The task-queue cluster running the current attempt (QueueCluster.name), so
    # the attempt can be taken back as soon as that cluster is known dead.
    worker = models.CharField(max_length=100, blank=True, db_index=True)
    # Remote providers: when the submit began (to find a task a crash lost the id
    # of) and when the provider started running it. When to ask next is the
    # task's (Task.next_poll_at).
    submit_started_at = models.DateTimeField(null=True, blank=True)
    # When the request that creates the paid task went out: before it, a job
    # taken back costs nothing; after it, the provider may have made the task.
    submit_posted_at = models.DateTimeField(null=True, blank=True)
    remote_started_at = models.DateTimeField(null=True, blank=True)
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


class Task(models.Model):
    """One unit of work at a provider for a job: a whole clip (index 0) or a segment.

    Opened when the queue claims a job for a provider slot (or a worker starts
    a local render), before any request goes out: a task that is being sent
    holds its slot. `state` is what the studio reads (the queue counts slots
    and plans polls by it); `remote_status` is the provider's own word, kept
    for display and the ledger. Every task a job ever had is kept (a retry
    opens a new one), so the reconciliation tells the account's other tasks
    apart. Written by the queue and by studio.reconcile.remember_task.
    """

    class State(models.TextChoices):
        PENDING = TaskState.PENDING.value, "Pending"
        RUNNING = TaskState.RUNNING.value, "Running"
        SUCCEEDED = TaskState.SUCCEEDED.value, "Succeeded"
        FAILED = TaskState.FAILED.value, "Failed"
        CANCELED = TaskState.CANCELED.value, "Canceled"
        EXPIRED = TaskState.EXPIRED.value, "Expired"

    ACTIVE = (State.PENDING, State.RUNNING)

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
    # When the queue asks the provider about it next, and how often it has.
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
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
        indexes = [
            # The queue's count of an account's busy slots.
            models.Index(fields=["provider", "state"], name="task_slots"),
        ]
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

    @classmethod
    def take_back(cls, job_id: int, *, now: datetime) -> None:
        """Close the tasks a job's attempt left open without a remote id.

        The attempt was taken back (a worker died, the listing showed no task
        for a lost submit): nothing the provider has carries such a task's id,
        and a task a crash made anyway is found by the reconciliation.
        """
        cls.objects.filter(job_id=job_id, remote_id="", state__in=cls.ACTIVE).update(
            state=cls.State.CANCELED,
            ended_at=now,
            next_poll_at=None,
            error_code="taken_back",
            error_message="The attempt was taken back; the job was queued again.",
        )

    @classmethod
    def open(
        cls,
        job: GenerationJob,
        *,
        account: str,
        model: str,
        now: datetime,
        state: State = State.PENDING,
    ) -> Task:
        """Open the task of a job's new attempt and make it the job's current one."""
        cls.take_back(job.pk, now=now)
        task = cls.objects.create(
            job=job,
            provider=job.provider,
            model=model,
            account=account,
            state=state,
            submitted_at=now,
            submit_started_at=now,
            started_at=now if state == cls.State.RUNNING else None,
        )
        GenerationJob.objects.filter(pk=job.pk).update(task=task)
        job.task = task
        return task
