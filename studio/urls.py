from __future__ import annotations

from django.urls import path

from .providers.wavespeed.views import wavespeed_webhook
from .web import (
    account,
    gallery,
    generate,
    inputs,
    jobs,
    media,
    notifications,
    provider_account,
    review,
    shares,
    spend,
    team,
)

app_name = "studio"

urlpatterns = [
    path("", generate.home, name="home"),
    path("new/", generate.job_create, name="job-create"),
    path("check/portrait/", inputs.portrait_check, name="portrait-check"),
    path("check/portrait/again/", inputs.portrait_recheck, name="portrait-recheck"),
    path("check/audio/", inputs.audio_check, name="audio-check"),
    path("estimate/", generate.job_estimate, name="job-estimate"),
    path("gallery/", gallery.gallery, name="gallery"),
    path("jobs/<uuid:code>/", jobs.job_detail, name="job-detail"),
    path("jobs/<uuid:code>/status/", jobs.job_status, name="job-status"),
    path("jobs/<uuid:code>/card/", gallery.job_card, name="job-card"),
    path("jobs/<uuid:code>/cancel/", jobs.job_cancel, name="job-cancel"),
    path("jobs/<uuid:code>/retry/", jobs.job_retry, name="job-retry"),
    path("jobs/<uuid:code>/rename/", jobs.job_rename, name="job-rename"),
    path("jobs/<uuid:code>/video.mp4", media.job_video, name="job-video"),
    path("jobs/<uuid:code>/poster.jpg", media.job_poster, name="job-poster"),
    path("files/portraits/<uuid:code>", media.portrait_file, name="portrait-file"),
    path("files/audio/<uuid:code>", media.audio_file, name="audio-file"),
    path("files/videos/<uuid:code>", media.video_file, name="video-file"),
    path(
        "files/videos/<uuid:code>/poster.jpg",
        media.video_file,
        {"part": "poster"},
        name="video-poster",
    ),
    path(
        "files/videos/<uuid:code>/preview.mp4",
        media.video_file,
        {"part": "preview"},
        name="video-preview",
    ),
    path("teams/switch/", account.team_switch, name="team-switch"),
    path("team/", team.team_settings, name="team-settings"),
    path("spend/", spend.spend, name="spend"),
    path("spend/ledger.csv", spend.ledger_csv, name="ledger-csv"),
    path("provider/resume/", provider_account.provider_resume, name="provider-resume"),
    path(
        "provider/reconcile/",
        provider_account.provider_reconcile,
        name="provider-reconcile",
    ),
    path("inputs/<str:token>", media.public_input, name="public-input"),
    path("hooks/wavespeed/", wavespeed_webhook, name="wavespeed-webhook"),
    # Gallery, review and hand-off.
    path("gallery/zip/", gallery.gallery_zip, name="gallery-zip"),
    path("jobs/<uuid:code>/favourite/", gallery.job_favourite, name="job-favourite"),
    path("jobs/<uuid:code>/notes/", jobs.job_notes, name="job-notes"),
    path("jobs/<uuid:code>/review/", review.job_review, name="job-review"),
    path("jobs/<uuid:code>/comments/", review.job_comment, name="job-comment"),
    path("jobs/<uuid:code>/variant/", jobs.job_variant, name="job-variant"),
    path("jobs/<uuid:code>/shares/", shares.share_create, name="share-create"),
    path("shares/<uuid:code>/revoke/", shares.share_revoke, name="share-revoke"),
    path("s/<str:token>/", shares.share_page, name="share-page"),
    path("s/<str:token>/video.mp4", shares.share_video, name="share-video"),
    path("s/<str:token>/poster.jpg", shares.share_poster, name="share-poster"),
    path("notifications/", notifications.notification_list, name="notifications"),
    path(
        "notifications/badge/",
        notifications.notification_badge,
        name="notification-badge",
    ),
]
