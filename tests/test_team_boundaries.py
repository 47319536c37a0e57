"""Every URL of the studio, walked as an admin of another team.

Whatever names an object of Acme's (a job, its media, a share, a zip of its
videos) must answer 404 to Globex's admin; pages without an object act on the
visitor's own team only. Share pages are public by design and show one video.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from studio import services, urls
from studio.models import (
    GenerationJob,
    JobComment,
    JobReview,
    Membership,
    Notification,
    ShareLink,
    VideoClip,
)
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

# URL name -> the Acme object whose code fills the URL.
NAMES_AN_OBJECT = {
    "job-detail": "job",
    "job-status": "job",
    "job-card": "job",
    "job-cancel": "job",
    "job-retry": "job",
    "job-rename": "job",
    "job-video": "job",
    "job-poster": "job",
    "job-favourite": "job",
    "job-notes": "job",
    "job-review": "job",
    "job-comment": "job",
    "job-variant": "job",
    "share-create": "job",
    "portrait-file": "portrait",
    "audio-file": "audio",
    "video-file": "video",
    "video-poster": "video",
    "video-preview": "video",
    "share-revoke": "share",
}
# No object in the URL: these act on the visitor's own active team (checked below).
OWN_TEAM_ONLY = {
    "home",
    "job-create",
    "portrait-check",
    "portrait-recheck",
    "audio-check",
    "gallery",
    "gallery-zip",
    "team-switch",
    "provider-resume",
    "provider-reconcile",
    "notifications",
    "notification-badge",
    "team-settings",
    "spend",
    "ledger-csv",
    "job-estimate",
}
# Public by design: a signed link is the permission. WaveSpeed's callback is
# signed by WaveSpeed (tests/test_wavespeed_provider.py refuses bad and old
# signatures) and only moves a poll forward; it shows no team's data.
PUBLIC = {
    "public-input",
    "share-page",
    "share-video",
    "share-poster",
    "wavespeed-webhook",
}


@pytest.fixture
def outsider(other_team):
    """Globex's admin: every role check passes, only the team boundary is left."""
    return make_member(other_team, "olga", Membership.Role.ADMIN)


@pytest.fixture
def outsider_client(outsider):
    client = Client()
    client.force_login(outsider)
    return client


@pytest.fixture
def acme(alice, team, checked_inputs):
    """Acme's things: a finished, approved, shared, discussed video."""
    portrait, audio = checked_inputs
    team.approval_required = True
    team.save()
    job = GenerationJob.objects.create(
        team=team,
        created_by=alice,
        portrait=portrait,
        audio=audio,
        provider="local",
        title="Acme secret launch",
        notes="acme-only notes",
        status=GenerationJob.Status.FAILED,
        video_duration=3.0,
        cost=Decimal("0.2"),
        review_state="approved",
    )
    job.video.save("video.mp4", ContentFile(b"acme video"))
    job.poster.save("poster.jpg", ContentFile(b"acme poster"))
    # Failed *and* holding a video: retry, review and sharing would all be
    # allowed for a member, so only the team check can refuse them.
    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded")
    job.refresh_from_db()
    share = ShareLink.objects.create(
        job=job, created_by=alice, expires_at=timezone.now() + timedelta(days=1)
    )
    JobReview.objects.create(job=job, reviewer=alice, decision="approved")
    JobComment.objects.create(job=job, author=alice, text="acme-only comment")
    Notification.objects.create(
        user=alice, team=team, job=job, kind="comment", message="acme-only notice"
    )
    video = VideoClip(
        team=team,
        uploaded_by=alice,
        original_name="acme-move.mp4",
        original_format="mp4",
        format="mp4",
        codec="h264",
        sha256="0" * 64,
        size=10,
        duration=3.0,
        width=320,
        height=240,
        fps=10.0,
        has_audio=False,
    )
    video.file.save("video", ContentFile(b"acme video"), save=False)
    video.poster.save("poster", ContentFile(b"acme poster"), save=False)
    video.preview.save("preview", ContentFile(b"acme preview"), save=False)
    video.save()
    return {
        "job": job,
        "portrait": portrait,
        "audio": audio,
        "video": video,
        "share": share,
    }


def _patterns() -> dict[str, URLPattern]:
    return {p.name: p for p in urls.urlpatterns if isinstance(p, URLPattern)}


def test_every_url_of_the_studio_is_classified():
    """A new URL must be added to one of the lists above to be walked."""
    assert set(_patterns()) == set(NAMES_AN_OBJECT) | OWN_TEAM_ONLY | PUBLIC
    assert not set(NAMES_AN_OBJECT) & OWN_TEAM_ONLY
    assert not (set(NAMES_AN_OBJECT) | OWN_TEAM_ONLY) & PUBLIC


def test_every_url_naming_another_teams_object_is_404(outsider_client, acme):
    job = acme["job"]
    checked = []
    for name, kind in NAMES_AN_OBJECT.items():
        url = reverse(f"studio:{name}", kwargs={"code": acme[kind].code})
        get = outsider_client.get(url)
        if get.status_code == 405:  # a POST-only view
            assert outsider_client.post(url).status_code == 404, url
        else:
            assert get.status_code == 404, url
            assert outsider_client.post(url).status_code in (404, 405), url
        checked.append(name)

    assert len(checked) == len(NAMES_AN_OBJECT)
    job.refresh_from_db()
    assert (job.title, job.notes, job.review_state) == (
        "Acme secret launch",
        "acme-only notes",
        "approved",
    )
    assert not GenerationJob.objects.filter(variant_of=job).exists()
    assert not GenerationJob.objects.filter(retry_of=job).exists()
    assert ShareLink.objects.filter(job=job).count() == 1
    assert acme["share"].is_active()
    assert JobComment.objects.filter(job=job).count() == 1
    assert not job.favourites.exists()


def test_pages_without_an_object_show_and_change_only_the_own_team(
    outsider_client, acme, team, other_team
):
    job = acme["job"]
    secret = ("Acme secret launch", "acme-only")
    pages = [
        outsider_client.get(reverse("studio:gallery")),
        outsider_client.get(reverse("studio:gallery"), {"author": "alice"}),
        outsider_client.get(reverse("studio:gallery"), {"q": "acme"}),
        outsider_client.get(reverse("studio:notifications")),
        outsider_client.get(reverse("studio:notification-badge")),
        outsider_client.get(reverse("studio:team-settings")),
        outsider_client.get(reverse("studio:job-create")),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert not any(s in html for s in secret), html
        assert str(job.code) not in html
    assert "Globex" in pages[5].content.decode()

    # Money pages and the estimate show the outsider's own team only.
    spend = outsider_client.get(reverse("studio:spend")).content.decode()
    assert "alice" not in spend and "Acme" not in spend
    ledger = b"".join(
        outsider_client.get(reverse("studio:ledger-csv")).streaming_content
    )
    assert str(job.code).encode() not in ledger and b"acme" not in ledger
    estimate = outsider_client.get(
        reverse("studio:job-estimate"),
        {"audio": acme["audio"].code, "portrait": acme["portrait"].code},
    ).content.decode()
    assert "appears once the audio is chosen" in estimate  # Acme's clip is not seen

    # "Use again", a zip, the team switch and the checks refuse Acme's codes.
    create = reverse("studio:job-create")
    assert outsider_client.get(create, {"from": job.code}).status_code == 404
    zipped = outsider_client.post(reverse("studio:gallery-zip"), {"job": job.code})
    assert zipped.status_code == 404
    switch = outsider_client.post(reverse("studio:team-switch"), {"team": team.code})
    assert switch.status_code == 404
    check = outsider_client.post(
        reverse("studio:audio-check"), {"portrait": acme["portrait"].code}
    )
    assert "disabled" in check.content.decode()  # Acme's portrait does not count
    submit = outsider_client.post(
        create,
        {
            "portrait": acme["portrait"].code,
            "audio": acme["audio"].code,
            "resolution": "480P",
        },
    )
    assert "they were not found" in submit.content.decode()
    assert not GenerationJob.objects.filter(team=other_team).exists()

    # Settings change the outsider's own team, never Acme's.
    outsider_client.post(reverse("studio:team-settings"), {"action": "approval"})
    team.refresh_from_db()
    other_team.refresh_from_db()
    assert team.approval_required and not other_team.approval_required


def test_public_share_pages_show_that_video_and_nothing_else(outsider_client, acme):
    token = services.share_token(acme["share"])
    page = outsider_client.get(reverse("studio:share-page", args=[token]))
    html = page.content.decode()

    assert page.status_code == 200
    assert "Acme secret launch" in html
    for private in ("acme-only", "alice", f"/jobs/{acme['job'].code}"):
        assert private not in html
    video = outsider_client.get(reverse("studio:share-video", args=[token]))
    assert b"".join(video.streaming_content) == b"acme video"
    # The same token never opens another of the team's files.
    assert outsider_client.get(f"/s/{token}/audio.wav").status_code == 404
    assert Client().get(reverse("studio:share-poster", args=[token])).status_code == 200
