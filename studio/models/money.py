"""Money and provider accounts: prices, the ledger, budgets, reconciliations."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from .jobs import GenerationJob
from .teams import Team


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
