from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from . import billing
from .models import (
    AudioClip,
    Budget,
    FaceCheck,
    GenerationJob,
    JobReview,
    LedgerEntry,
    Membership,
    Portrait,
    Price,
    ProviderAccount,
    ShareLink,
    Team,
    User,
    VideoClip,
)


class MembershipInline(admin.TabularInline[Membership, Team]):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(User)
class StudioUserAdmin(UserAdmin[User]):
    pass


class BudgetInline(admin.TabularInline[Budget, Team]):
    model = Budget
    extra = 0
    fields = [
        "user",
        "monthly_amount",
        "monthly_seconds",
        "max_resolution",
        "max_waiting_jobs",
        "stop_at_limit",
    ]
    autocomplete_fields = ["user"]


_M = TypeVar("_M", Team, Budget)


class _UsageAdmin(admin.ModelAdmin[_M]):
    """The spent-this-month and held columns, from `billing.with_usage`."""

    usage_team_field: ClassVar[str]
    usage_per_user: ClassVar[bool]

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        # Usage columns come from one query, not queries per row.
        rows: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[_M] = billing.with_usage(
            rows, team_field=self.usage_team_field, per_user=self.usage_per_user
        )
        return annotated

    @admin.display(description="Spent this month", ordering="spent")
    def spent(self, row: _M) -> Decimal:
        return _cents(row.spent)  # type: ignore[attr-defined]

    @admin.display(description="Held", ordering="held")
    def held(self, row: _M) -> Decimal:
        return _cents(row.held)  # type: ignore[attr-defined]


@admin.register(Team)
class TeamAdmin(_UsageAdmin[Team]):
    list_display = ["name", "slug", "spent", "held", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline, BudgetInline]
    usage_team_field = "pk"
    usage_per_user = False


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"))


@admin.register(Budget)
class BudgetAdmin(_UsageAdmin[Budget]):
    list_display = [
        "__str__",
        "team",
        "user",
        "monthly_amount",
        "monthly_seconds",
        "max_resolution",
        "max_waiting_jobs",
        "stop_at_limit",
        "spent",
        "held",
        "remaining",
    ]
    list_editable = [
        "monthly_amount",
        "monthly_seconds",
        "max_resolution",
        "max_waiting_jobs",
        "stop_at_limit",
    ]
    list_filter = ["team", "stop_at_limit", "max_resolution"]
    search_fields = ["team__name", "user__username"]
    list_select_related = ["team", "user"]
    autocomplete_fields = ["user"]
    actions = ["raise_by_a_fifth", "release_stale_holds"]

    usage_team_field = "team"
    usage_per_user = True

    @admin.display(description="Remaining")
    def remaining(self, budget: Budget) -> Decimal | str:
        if budget.monthly_amount is None:
            return "no limit"
        return _cents(budget.monthly_amount - budget.spent - budget.held)  # type: ignore[attr-defined]

    @admin.action(description="Raise the monthly budget by 20 %%")
    def raise_by_a_fifth(
        self, request: HttpRequest, queryset: QuerySet[Budget]
    ) -> None:
        raised = 0
        for budget in queryset.exclude(monthly_amount__isnull=True):
            assert budget.monthly_amount is not None
            budget.monthly_amount = (budget.monthly_amount * Decimal("1.2")).quantize(
                Decimal("0.01")
            )
            budget.save(update_fields=["monthly_amount"])
            raised += 1
        self.message_user(
            request, f"Raised {raised} budgets by 20 %.", messages.SUCCESS
        )

    @admin.action(description="Release holds of finished jobs")
    def release_stale_holds(
        self, request: HttpRequest, queryset: QuerySet[Budget]
    ) -> None:
        count = billing.release_stale_holds()
        self.message_user(request, f"Settled {count} finished jobs with a stale hold.")


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin[Price]):
    list_display = [
        "provider",
        "model",
        "unit",
        "resolution",
        "currency",
        "unit_price",
        "valid_from",
        "valid_to",
    ]
    list_editable = ["unit_price", "valid_to"]
    list_filter = ["provider", "currency", "unit"]
    search_fields = ["provider", "model"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin[LedgerEntry]):
    """Read-only: the ledger is append-only."""

    list_display = [
        "created_at",
        "team",
        "user",
        "kind",
        "provider",
        "resolution",
        "quantity",
        "unit_price",
        "amount",
        "currency",
        "billed",
        "reason",
    ]
    list_filter = ["kind", "billed", "provider", "currency", "team"]
    search_fields = ["remote_id", "reason", "user__username", "job__code"]
    list_select_related = ["team", "user"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin[GenerationJob]):
    list_display = [
        "display_title",
        "team",
        "created_by",
        "status",
        "provider",
        "model",
        "resolution",
        "queued_at",
        "billed_seconds",
        "cost",
    ]
    # recovery=admin: the provider may have made the video; check the bill.
    list_filter = ["status", "recovery", "provider", "model", "resolution", "team"]
    search_fields = ["title", "code", "remote_task_id", "created_by__username"]
    list_select_related = ["team", "created_by"]
    readonly_fields = [f.name for f in GenerationJob._meta.fields]


@admin.register(FaceCheck)
class FaceCheckAdmin(admin.ModelAdmin[FaceCheck]):
    list_display = ["sha256", "provider", "check_pass", "reason", "created_at"]
    list_filter = ["provider", "check_pass", "reason"]
    readonly_fields = [f.name for f in FaceCheck._meta.fields]


@admin.register(Portrait)
class PortraitAdmin(admin.ModelAdmin[Portrait]):
    list_display = [
        "original_name",
        "team",
        "uploaded_by",
        "width",
        "height",
        "created_at",
    ]
    list_select_related = ["team", "uploaded_by"]


@admin.register(AudioClip)
class AudioClipAdmin(admin.ModelAdmin[AudioClip]):
    list_display = [
        "original_name",
        "team",
        "original_format",
        "duration",
        "created_at",
    ]
    list_select_related = ["team"]


@admin.register(VideoClip)
class VideoClipAdmin(admin.ModelAdmin[VideoClip]):
    list_display = [
        "original_name",
        "team",
        "original_format",
        "duration",
        "width",
        "height",
        "created_at",
    ]
    list_select_related = ["team"]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin[ShareLink]):
    list_display = ["job", "created_by", "created_at", "expires_at", "revoked_at"]
    list_select_related = ["job", "created_by"]
    readonly_fields = ["code", "job", "created_by", "created_at", "revoked_by"]


@admin.register(JobReview)
class JobReviewAdmin(admin.ModelAdmin[JobReview]):
    list_display = ["job", "reviewer", "decision", "created_at"]
    list_filter = ["decision"]
    list_select_related = ["job", "reviewer"]
    readonly_fields = [f.name for f in JobReview._meta.fields]


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin[ProviderAccount]):
    """Whether each provider account is dispatching, and why not when paused."""

    list_display = [
        "provider",
        "is_paused",
        "paused_code",
        "paused_at",
        "retry_at",
        "last_dispatch_at",
    ]
    readonly_fields = [
        "provider",
        "paused_code",
        "paused_message",
        "paused_at",
        "retry_at",
        "last_dispatch_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(boolean=True, description="Paused")
    def is_paused(self, account: ProviderAccount) -> bool:
        return account.is_paused
