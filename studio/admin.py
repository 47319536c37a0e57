from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import (
    AudioClip,
    FaceCheck,
    GenerationJob,
    JobReview,
    Membership,
    Portrait,
    ShareLink,
    Team,
    User,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(User)
class StudioUserAdmin(UserAdmin):
    pass


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = [
        "display_title",
        "team",
        "created_by",
        "status",
        "engine",
        "resolution",
        "queued_at",
        "billed_seconds",
        "cost",
    ]
    list_filter = ["status", "engine", "resolution", "team"]
    search_fields = ["title", "code", "remote_task_id", "created_by__username"]
    list_select_related = ["team", "created_by"]
    readonly_fields = [f.name for f in GenerationJob._meta.fields]


@admin.register(FaceCheck)
class FaceCheckAdmin(admin.ModelAdmin):
    list_display = ["sha256", "engine", "check_pass", "reason", "created_at"]
    list_filter = ["engine", "check_pass", "reason"]
    readonly_fields = [f.name for f in FaceCheck._meta.fields]


@admin.register(Portrait)
class PortraitAdmin(admin.ModelAdmin):
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
class AudioClipAdmin(admin.ModelAdmin):
    list_display = [
        "original_name",
        "team",
        "original_format",
        "duration",
        "created_at",
    ]
    list_select_related = ["team"]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ["job", "created_by", "created_at", "expires_at", "revoked_at"]
    list_select_related = ["job", "created_by"]
    readonly_fields = ["code", "job", "created_by", "created_at", "revoked_by"]


@admin.register(JobReview)
class JobReviewAdmin(admin.ModelAdmin):
    list_display = ["job", "reviewer", "decision", "created_at"]
    list_filter = ["decision"]
    list_select_related = ["job", "reviewer"]
    readonly_fields = [f.name for f in JobReview._meta.fields]
