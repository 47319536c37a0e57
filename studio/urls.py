from __future__ import annotations

from django.urls import path

from . import views
from .providers.wavespeed.views import wavespeed_webhook

app_name = "studio"

urlpatterns = [
    path("", views.home, name="home"),
    path("new/", views.job_create, name="job-create"),
    path("check/portrait/", views.portrait_check, name="portrait-check"),
    path("check/portrait/again/", views.portrait_recheck, name="portrait-recheck"),
    path("check/audio/", views.audio_check, name="audio-check"),
    path("estimate/", views.job_estimate, name="job-estimate"),
    path("gallery/", views.gallery, name="gallery"),
    path("jobs/<uuid:code>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:code>/status/", views.job_status, name="job-status"),
    path("jobs/<uuid:code>/card/", views.job_card, name="job-card"),
    path("jobs/<uuid:code>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:code>/retry/", views.job_retry, name="job-retry"),
    path("jobs/<uuid:code>/rename/", views.job_rename, name="job-rename"),
    path("jobs/<uuid:code>/video.mp4", views.job_video, name="job-video"),
    path("jobs/<uuid:code>/poster.jpg", views.job_poster, name="job-poster"),
    path("files/portraits/<uuid:code>", views.portrait_file, name="portrait-file"),
    path("files/audio/<uuid:code>", views.audio_file, name="audio-file"),
    path("teams/switch/", views.team_switch, name="team-switch"),
    path("team/", views.team_settings, name="team-settings"),
    path("spend/", views.spend, name="spend"),
    path("spend/ledger.csv", views.ledger_csv, name="ledger-csv"),
    path("provider/resume/", views.provider_resume, name="provider-resume"),
    path("provider/reconcile/", views.provider_reconcile, name="provider-reconcile"),
    path("inputs/<str:token>", views.public_input, name="public-input"),
    path("hooks/wavespeed/", wavespeed_webhook, name="wavespeed-webhook"),
    # Gallery, review and hand-off.
    path("gallery/zip/", views.gallery_zip, name="gallery-zip"),
    path("jobs/<uuid:code>/favourite/", views.job_favourite, name="job-favourite"),
    path("jobs/<uuid:code>/notes/", views.job_notes, name="job-notes"),
    path("jobs/<uuid:code>/review/", views.job_review, name="job-review"),
    path("jobs/<uuid:code>/comments/", views.job_comment, name="job-comment"),
    path("jobs/<uuid:code>/variant/", views.job_variant, name="job-variant"),
    path("jobs/<uuid:code>/shares/", views.share_create, name="share-create"),
    path("shares/<uuid:code>/revoke/", views.share_revoke, name="share-revoke"),
    path("s/<str:token>/", views.share_page, name="share-page"),
    path("s/<str:token>/video.mp4", views.share_video, name="share-video"),
    path("s/<str:token>/poster.jpg", views.share_poster, name="share-poster"),
    path("notifications/", views.notification_list, name="notifications"),
    path(
        "notifications/badge/",
        views.notification_badge,
        name="notification-badge",
    ),
]
