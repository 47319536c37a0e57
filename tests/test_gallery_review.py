"""The gallery as a team's home: finding, judging and handing on videos."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from studio import services
from studio.media import serving as media
from studio.models import (
    Favourite,
    GenerationJob,
    JobComment,
    JobReview,
    Membership,
    Notification,
    ShareLink,
)
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def inputs(checked_inputs):
    return checked_inputs


@pytest.fixture
def make(team, alice, inputs):
    """make(title=..., **fields): a job of Acme's; finished ones get stored files."""
    portrait, audio = inputs

    def make_job(*, user=None, video=b"", **fields):
        fields.setdefault("provider", "local")
        job = GenerationJob.objects.create(
            team=fields.pop("team", team),
            created_by=user or alice,
            portrait=portrait,
            audio=audio,
            **fields,
        )
        if fields.get("status") == GenerationJob.Status.SUCCEEDED:
            job.video.save("video.mp4", ContentFile(video or b"mp4 " + job.code.bytes))
            job.poster.save("poster.jpg", ContentFile(b"jpeg"))
        return job

    return make_job


def done(make, title, **fields):
    fields.setdefault("video_duration", 4.0)
    fields.setdefault("cost", Decimal("0.286708"))
    fields.setdefault("currency", "USD")
    return make(title=title, status=GenerationJob.Status.SUCCEEDED, **fields)


@pytest.fixture
def bob(team):
    return make_member(team, "bob")


@pytest.fixture
def rita(team):
    """A reviewer of Acme."""
    return make_member(team, "rita", Membership.Role.REVIEWER)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def grid_titles(client, titles, **query):
    html = client.get(reverse("studio:gallery"), query, headers=HTMX).content.decode()
    return [t for t in titles if f">{t}</a>" in html]


def ordered_titles(client, **query):
    html = client.get(reverse("studio:gallery"), query, headers=HTMX).content.decode()
    return re.findall(r'<h3><a href="[^"]+">([^<]+)</a></h3>', html)


# -- finding --------------------------------------------------------------------


def test_gallery_filters_by_review_state_engine_dates_and_favourites(
    alice_client, alice, make
):
    approved = done(make, "Approved", review_state="approved", provider="emulator")
    done(make, "Changes", review_state="changes")
    old = done(make, "Old")
    GenerationJob.objects.filter(pk=old.pk).update(
        queued_at=timezone.now() - timedelta(days=40)
    )
    Favourite.objects.create(user=alice, job=approved)
    titles = ("Approved", "Changes", "Old")
    week_ago = (timezone.localdate() - timedelta(days=7)).isoformat()
    long_ago = (timezone.localdate() - timedelta(days=41)).isoformat()

    assert grid_titles(alice_client, titles, review="approved") == ["Approved"]
    assert grid_titles(alice_client, titles, review="none") == ["Old"]
    assert grid_titles(alice_client, titles, provider="emulator") == ["Approved"]
    assert grid_titles(alice_client, titles, favourites="1") == ["Approved"]
    assert grid_titles(alice_client, titles, date_from=week_ago) == [
        "Approved",
        "Changes",
    ]
    assert grid_titles(alice_client, titles, date_from=long_ago, date_to=week_ago) == [
        "Old"
    ]
    assert grid_titles(alice_client, titles, date_from="not a date") == list(titles)


def test_search_finds_every_word_in_the_title_or_the_notes(alice_client, make):
    done(make, "Welcome video", notes="For the Berlin office")
    done(make, "Berlin teaser")
    done(make, "Pricing update", notes="client: Globex")
    titles = ("Welcome video", "Berlin teaser", "Pricing update")

    assert grid_titles(alice_client, titles, q="berlin") == [
        "Welcome video",
        "Berlin teaser",
    ]
    assert grid_titles(alice_client, titles, q="welcome  BERLIN") == ["Welcome video"]
    assert grid_titles(alice_client, titles, q="globex") == ["Pricing update"]
    assert grid_titles(alice_client, titles, q="nothing like it") == []


def test_gallery_sorts_by_date_duration_and_cost(alice_client, make):
    short = done(make, "Short", video_duration=2.0, cost=Decimal("0.5"))
    long = done(make, "Long", video_duration=9.0, cost=Decimal("0.1"))
    make(title="Queued")  # no duration or cost yet: always last
    now = timezone.now()
    GenerationJob.objects.filter(pk=short.pk).update(queued_at=now - timedelta(2))
    GenerationJob.objects.filter(pk=long.pk).update(queued_at=now - timedelta(1))

    assert ordered_titles(alice_client) == ["Queued", "Long", "Short"]
    assert ordered_titles(alice_client, sort="oldest") == ["Short", "Long", "Queued"]
    assert ordered_titles(alice_client, sort="longest") == ["Long", "Short", "Queued"]
    assert ordered_titles(alice_client, sort="shortest") == ["Short", "Long", "Queued"]
    assert ordered_titles(alice_client, sort="costliest") == [
        "Short",
        "Long",
        "Queued",
    ]
    assert ordered_titles(alice_client, sort="cheapest") == ["Long", "Short", "Queued"]


def test_filters_work_as_a_plain_get_form_and_links_keep_them(
    alice_client, alice, make
):
    for n in range(14):
        done(make, f"Take {n}", notes="keep")

    response = alice_client.get(
        reverse("studio:gallery"), {"q": "keep", "sort": "longest", "review": "none"}
    )
    html = response.content.decode()

    assert "<html" in html  # a whole page: what a browser without JavaScript gets
    form = html[html.index('<form id="gallery-filters"') :]
    form = form[: form.index("</form>")]
    assert 'method="get"' in form and "<noscript><button" in form
    assert 'hx-push-url="true"' in form and 'hx-target="#gallery-grid"' in form
    assert 'name="q" value="keep"' in form
    assert '<option value="longest" selected>' in form
    assert "q=keep&amp;review=none&amp;sort=longest&amp;page=2" in html
    assert 'href="/gallery/"' in form  # "Clear filters"


def test_cards_show_poster_title_author_date_duration_resolution_cost_and_review(
    alice_client, make
):
    job = done(
        make,
        "Card",
        resolution="720P",
        video_duration=75.0,
        cost=Decimal("9.676350"),
        review_state="approved",
    )

    html = alice_client.get(reverse("studio:gallery")).content.decode()
    card = html[html.index(f'id="job-{job.code}"') :]
    card = card[: card.index("</article>")]

    assert f'poster="/jobs/{job.code}/poster.jpg"' in card
    assert "data-hover-preview" in card and "muted" in card
    assert ">Card</a>" in card and "alice" in card
    assert job.queued_at.strftime("%b") in card
    assert "720P · 1:15 · $9.68" in card
    assert 'data-review="approved">Approved' in card
    assert f"/new/?from={job.code}" in card


def test_favourites_belong_to_each_user(alice_client, alice, bob, make):
    job = done(make, "Starred")
    url = reverse("studio:job-favourite", args=[job.code])

    fragment = alice_client.post(url, {"on": "1"}, headers=HTMX).content.decode()
    alice_client.post(url, {"on": "1"}, headers=HTMX)  # a double click changes nothing

    assert fragment.lstrip().startswith(f'<form id="favourite-{job.code}"')
    assert 'aria-pressed="true"' in fragment and 'name="on" value="0"' in fragment
    assert Favourite.objects.filter(job=job).count() == 1
    assert grid_titles(alice_client, ["Starred"], favourites="1") == ["Starred"]
    assert grid_titles(client_for(bob), ["Starred"], favourites="1") == []

    back = alice_client.post(url, {"on": "0", "next": "/gallery/?q=x"})
    assert back.status_code == 302 and back.url == "/gallery/?q=x"
    assert not Favourite.objects.filter(job=job).exists()


def test_favourite_without_javascript_does_not_redirect_off_site(alice_client, make):
    job = done(make, "Starred")
    response = alice_client.post(
        reverse("studio:job-favourite", args=[job.code]),
        {"on": "1", "next": "https://evil.example/"},
    )
    assert response.url == job.get_absolute_url()


def _gallery_queries(client, **query) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("studio:gallery"), query)
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_gallery_queries_are_fixed_whatever_the_page_holds(
    alice_client, alice, bob, make
):
    first = done(make, "One", review_state="approved")
    Favourite.objects.create(user=alice, job=first)
    one = _gallery_queries(alice_client)
    one_filtered = _gallery_queries(
        alice_client, q="o", favourites="1", sort="cheapest"
    )

    for n in range(30):
        job = done(make, f"Many {n}", user=bob if n % 2 else alice)
        Favourite.objects.create(user=alice, job=job)
        JobComment.objects.create(job=job, author=bob, text="hi")
        make(title=f"Queued {n}")

    assert _gallery_queries(alice_client) == one
    assert _gallery_queries(alice_client, q="o", favourites="1", sort="cheapest") == (
        one_filtered
    )
    with CaptureQueriesContext(connection) as captured:
        alice_client.get(reverse("studio:gallery"), {"page": "2"}, headers=HTMX)
    assert len(captured.captured_queries) <= one


def test_use_again_opens_the_form_with_the_same_inputs_and_settings(
    alice_client, make, inputs, enqueued
):
    portrait, audio = inputs
    job = done(make, "Welcome, take 3", resolution="720P")

    html = alice_client.get(
        reverse("studio:job-create"), {"from": str(job.code)}
    ).content.decode()

    assert f'<input type="hidden" name="portrait" value="{portrait.code}">' in html
    assert f'<input type="hidden" name="audio" value="{audio.code}">' in html
    assert "Face found: good to go." in html and "Fits:" in html
    assert 'value="720P" checked' in html
    assert 'value="Welcome, take 3"' in html
    assert re.search(r'<button id="generate-button" type="submit" >', html)
    assert f'src="/files/portraits/{portrait.code}"' in html

    # Submitting it queues a job with the very same stored files.
    alice_client.post(
        reverse("studio:job-create"),
        {
            "portrait": portrait.code,
            "audio": audio.code,
            "resolution": "720P",
            "title": "Welcome, take 3",
        },
    )
    new = GenerationJob.objects.exclude(pk=job.pk).get()
    assert (new.portrait_id, new.audio_id, new.resolution) == (
        portrait.pk,
        audio.pk,
        "720P",
    )


def test_use_again_with_a_bad_code_is_404(alice_client):
    assert alice_client.get("/new/?from=nonsense").status_code == 404


def _zip(client, jobs, **extra):
    return client.post(
        reverse("studio:gallery-zip"), {"job": [str(j.code) for j in jobs], **extra}
    )


def test_selected_videos_download_as_one_streamed_zip(alice_client, make):
    first = done(make, "Intro", video=b"A" * 300_000)
    second = done(make, "Intro", video=b"B" * 1000)  # same title: names stay apart
    third = done(make, "Outro", resolution="720P", video=b"C" * 10)

    response = _zip(alice_client, [first, second, third])

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    assert re.match(
        r'attachment; filename="acme videos [\d-]+ \d{4}\.zip"',
        response["Content-Disposition"],
    )
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    assert archive.namelist() == [
        "Intro 480P.mp4",
        "Intro 480P (2).mp4",
        "Outro 720P.mp4",
    ]
    assert archive.read("Intro 480P.mp4") == b"A" * 300_000
    assert archive.read("Outro 720P.mp4") == b"C" * 10
    assert archive.getinfo("Outro 720P.mp4").external_attr >> 16 == 0o100644


def test_the_zip_stream_keeps_memory_flat_however_large_the_files(db):
    names = []
    for n in range(4):
        names.append(
            default_storage.save(
                f"zip-test/{n}.mp4", ContentFile(bytes([n]) * 6_000_000)
            )
        )
    tracemalloc.start()
    try:
        size = 0
        for chunk in media.zip_stream(
            (f"{n}.mp4", name) for n, name in enumerate(names)
        ):
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size > 24_000_000
    # Four files of 6 MB went through; at most about two chunks were ever held,
    # plus, on S3, the HTTP client's own buffers (fixed, not per byte read).
    overhead = 1_500_000 if getattr(default_storage, "bucket", None) else 300_000
    assert peak < 2 * media.CHUNK + overhead


def test_zip_refuses_unfinished_and_when_required_unapproved_videos(
    alice_client, team, make
):
    ready = done(make, "Ready")
    queued = make(title="Still queued")

    refused = _zip(alice_client, [ready, queued], next="/gallery/?q=a")
    assert refused.status_code == 302 and refused.url == "/gallery/?q=a"
    page = alice_client.get(refused.url).content.decode()
    assert "Only finished videos can be downloaded: Still queued." in page

    team.approval_required = True
    team.save()
    assert _zip(alice_client, [ready]).status_code == 302
    GenerationJob.objects.filter(pk=ready.pk).update(review_state="approved")
    assert _zip(alice_client, [ready]).status_code == 200


def test_the_zip_of_nothing_chosen_says_so(alice_client):
    response = alice_client.post(reverse("studio:gallery-zip"), follow=True)
    assert "Choose at least one video" in response.content.decode()


# -- judging ----------------------------------------------------------------------


def test_a_reviewer_approves_with_a_comment_and_the_history_shows_it(
    rita, make, mailoutbox, django_capture_on_commit_callbacks
):
    job = done(make, "Pitch")
    job.created_by.email = "alice@example.com"
    job.created_by.save()
    rita_client = client_for(rita)

    with django_capture_on_commit_callbacks(execute=True):
        fragment = rita_client.post(
            reverse("studio:job-review", args=[job.code]),
            {"decision": "approved", "comment": "Lovely <b>pacing</b>"},
            headers=HTMX,
        )
    html = fragment.content.decode()

    job.refresh_from_db()
    assert job.review_state == "approved"
    assert html.lstrip().startswith('<section id="job-review"')
    assert 'data-review="approved">Approved' in html
    assert "<strong>rita</strong> approved" in html
    assert "Lovely &lt;b&gt;pacing&lt;/b&gt;" in html
    assert "job-reviewed" in fragment["HX-Trigger"]
    notice = Notification.objects.get(user=job.created_by, kind="approved")
    assert notice.message == "rita approved “Pitch”: Lovely <b>pacing</b>"
    assert [m.to for m in mailoutbox] == [["alice@example.com"]]
    assert "rita approved" in mailoutbox[0].subject


def test_requesting_changes_needs_a_comment_and_replaces_approval(rita, make):
    job = done(make, "Pitch", review_state="approved")
    url = reverse("studio:job-review", args=[job.code])
    rita_client = client_for(rita)

    refused = rita_client.post(url, {"decision": "changes"}, headers=HTMX)
    assert "a change request needs a comment" in refused.content.decode()
    assert JobReview.objects.count() == 0

    rita_client.post(url, {"decision": "changes", "comment": "Shorter intro"})
    job.refresh_from_db()
    assert job.review_state == "changes"
    detail = rita_client.get(job.get_absolute_url()).content.decode()
    assert 'data-review="changes">Changes requested' in detail
    assert "requested changes" in detail and "Shorter intro" in detail


def test_members_cannot_review_and_do_not_see_the_form(bob, make):
    job = done(make, "Pitch")
    bob_client = client_for(bob)

    response = bob_client.post(
        reverse("studio:job-review", args=[job.code]), {"decision": "approved"}
    )
    detail = bob_client.get(job.get_absolute_url()).content.decode()

    assert response.status_code == 403
    assert GenerationJob.objects.get(pk=job.pk).review_state == "none"
    assert 'value="approved">Approve' not in detail


def test_an_unfinished_video_cannot_be_reviewed(rita, make):
    job = make(title="Queued")
    client_for(rita).post(
        reverse("studio:job-review", args=[job.code]), {"decision": "approved"}
    )
    assert GenerationJob.objects.get(pk=job.pk).review_state == "none"


def test_comments_are_plain_text_and_tell_the_author(
    bob, make, django_capture_on_commit_callbacks
):
    job = done(make, "Pitch")
    url = reverse("studio:job-comment", args=[job.code])

    fragment = client_for(bob).post(
        url, {"text": "<script>alert(1)</script>\nsecond line"}, headers=HTMX
    )
    html = fragment.content.decode()

    assert html.lstrip().startswith('<section id="job-comments"')
    assert "&lt;script&gt;alert(1)&lt;/script&gt;<br>second line" in html
    assert "<script>alert" not in html
    assert "<strong>bob</strong>" in html
    notice = Notification.objects.get(kind="comment")
    assert notice.user == job.created_by and notice.actor == bob

    empty = client_for(bob).post(url, {"text": "   "}, headers=HTMX)
    assert "Write something first." in empty.content.decode()
    assert JobComment.objects.count() == 1


def test_notes_are_saved_from_the_detail_page(alice_client, make):
    job = done(make, "Pitch")

    fragment = alice_client.post(
        reverse("studio:job-notes", args=[job.code]),
        {"notes": "  Client wants a warmer tone  "},
        headers=HTMX,
    )

    assert fragment.content.decode().lstrip().startswith('<form id="job-notes"')
    assert GenerationJob.objects.get(pk=job.pk).notes == "Client wants a warmer tone"


def test_rerun_at_720p_makes_a_linked_variant_shown_side_by_side(
    alice_client, make, enqueued, run_enqueued, django_capture_on_commit_callbacks
):
    draft = done(make, "Take 1")

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("studio:job-variant", args=[draft.code]), {"resolution": "720P"}
        )

    variant = GenerationJob.objects.get(variant_of=draft)
    assert response.status_code == 302 and response.url == variant.get_absolute_url()
    assert (variant.resolution, variant.title) == ("720P", "Take 1")
    assert (variant.portrait_id, variant.audio_id) == (
        draft.portrait_id,
        draft.audio_id,
    )
    run_enqueued()  # the worker renders it
    variant.refresh_from_db()
    assert variant.status == "succeeded" and variant.cost is not None

    html = alice_client.get(draft.get_absolute_url()).content.decode()
    section = html[html.index('<section id="job-variants"') :]
    section = section[: section.index("</section>")]
    assert section.count('class="variant') == 2
    assert 'data-resolution="480P"' in section and 'data-resolution="720P"' in section
    assert "$0.2867" in section  # the draft's cost beside the final's
    assert '<span class="cost">$0.00</span>' in section  # the local provider is free

    # A variant of the variant still belongs to the first take.
    alice_client.post(
        reverse("studio:job-variant", args=[variant.code]), {"resolution": "480P"}
    )
    assert GenerationJob.objects.filter(variant_of=draft).count() == 2


def test_the_detail_page_shows_variant_buttons_for_the_other_resolution(
    alice_client, make
):
    html = alice_client.get(done(make, "Take").get_absolute_url()).content.decode()
    assert "Re-run at 720P" in html and "Re-run at 480P" not in html


def _detail_queries(client, job) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(job.get_absolute_url())
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_detail_page_queries_are_fixed_whatever_the_thread_holds(
    alice_client, alice, bob, rita, make
):
    job = done(make, "Pitch")
    baseline = _detail_queries(alice_client, job)

    for n in range(20):
        JobComment.objects.create(job=job, author=bob if n % 2 else rita, text="x")
        JobReview.objects.create(job=job, reviewer=rita, decision="approved")
        done(make, f"Variant {n}", variant_of=job, user=bob)
        ShareLink.objects.create(
            job=job,
            created_by=alice,
            expires_at=timezone.now() + timedelta(days=1),
            revoked_at=timezone.now() if n % 2 else None,
            revoked_by=bob if n % 2 else None,
        )
    Favourite.objects.create(user=alice, job=job)

    assert _detail_queries(alice_client, job) == baseline


def test_team_settings_are_for_admins(alice_client, bob, team):
    response = alice_client.post(
        reverse("studio:team-settings"),
        {"action": "approval", "approval_required": "on"},
    )
    team.refresh_from_db()
    assert response.status_code == 302 and team.approval_required
    # Not an admin: the page answers like any page outside one's reach.
    assert client_for(bob).get(reverse("studio:team-settings")).status_code == 404


# -- handing on -------------------------------------------------------------------


def _share(client, job, days=7):
    return client.post(reverse("studio:share-create", args=[job.code]), {"days": days})


def _share_url(job) -> str:
    share = ShareLink.objects.filter(job=job).latest("created_at")
    return reverse("studio:share-page", args=[services.share_token(share)])


def test_a_share_link_shows_only_that_video_to_anyone(alice_client, make):
    job = done(make, "Launch", notes="secret notes", video=b"the video")
    done(make, "Another video")
    _share(alice_client, job)
    url = _share_url(job)

    visitor = Client()  # not signed in
    page = visitor.get(url)
    html = page.content.decode()
    video_url = url + "video.mp4"

    assert page.status_code == 200
    assert "<h1>Launch</h1>" in html
    assert f'src="{video_url}"' in html and f'poster="{url}poster.jpg"' in html
    for private in ("secret notes", "Another video", "alice", "/jobs/", "Gallery"):
        assert private not in html
    assert page["X-Robots-Tag"] == "noindex, nofollow"
    video = visitor.get(video_url)
    assert b"".join(video.streaming_content) == b"the video"
    assert visitor.get(url + "poster.jpg").status_code == 200


def test_share_links_are_signed_expire_and_can_be_revoked(alice_client, make):
    job = done(make, "Launch")
    _share(alice_client, job, days=1)
    share = ShareLink.objects.get()
    url = _share_url(job)
    visitor = Client()

    assert visitor.get(url).status_code == 200
    code, _, signature = services.share_token(share).partition(":")
    forged = reverse("studio:share-page", args=[f"{code}:{signature[:-2]}xx"])
    assert visitor.get(forged).status_code == 404
    assert visitor.get(f"/s/{code}/").status_code == 404

    ShareLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert visitor.get(url).status_code == 404
    assert visitor.get(url + "video.mp4").status_code == 404
    ShareLink.objects.update(expires_at=timezone.now() + timedelta(days=1))

    fragment = alice_client.post(
        reverse("studio:share-revoke", args=[share.code]), headers=HTMX
    ).content.decode()
    assert fragment.lstrip().startswith('<section id="job-shares"')
    assert "Revoked" in fragment and "by alice" in fragment
    assert visitor.get(url).status_code == 404
    assert visitor.get(url + "video.mp4").status_code == 404


def test_the_sharer_chooses_the_expiry(alice_client, make):
    job = done(make, "Launch")
    _share(alice_client, job, days=30)
    share = ShareLink.objects.get()
    assert share.expires_at - share.created_at == pytest.approx(
        timedelta(days=30), abs=timedelta(seconds=5)
    )
    assert _share(alice_client, job, days=9999).status_code == 302
    assert ShareLink.objects.count() == 1


def test_with_approval_required_only_approved_videos_are_shared(
    alice_client, team, rita, make
):
    team.approval_required = True
    team.save()
    job = done(make, "Launch")

    refused = alice_client.post(
        reverse("studio:share-create", args=[job.code]), {"days": 7}, headers=HTMX
    ).content.decode()
    assert "only approved videos" in refused
    assert not ShareLink.objects.exists()

    client_for(rita).post(
        reverse("studio:job-review", args=[job.code]), {"decision": "approved"}
    )
    _share(alice_client, job)
    url = _share_url(job)
    assert Client().get(url).status_code == 200

    # Sent back for changes: the link closes until it is approved again.
    client_for(rita).post(
        reverse("studio:job-review", args=[job.code]),
        {"decision": "changes", "comment": "Wrong logo"},
    )
    assert Client().get(url).status_code == 404


def test_an_unfinished_video_cannot_be_shared(alice_client, make):
    job = make(title="Queued")
    _share(alice_client, job)
    assert not ShareLink.objects.exists()


def test_a_share_token_of_another_purpose_is_refused(make):
    from django.core import signing

    job = done(make, "Launch")
    share = ShareLink.objects.create(
        job=job, created_by=job.created_by, expires_at=timezone.now() + timedelta(1)
    )
    other = signing.Signer(salt="something else").sign(share.code.hex)
    assert Client().get(reverse("studio:share-page", args=[other])).status_code == 404


def test_shared_dates_are_plain_text(make):
    # Titles come from users: the public page escapes them like everything else.
    job = done(make, "<img src=x>")
    share = ShareLink.objects.create(
        job=job, created_by=job.created_by, expires_at=timezone.now() + timedelta(1)
    )
    html = (
        Client()
        .get(reverse("studio:share-page", args=[services.share_token(share)]))
        .content.decode()
    )
    assert "&lt;img src=x&gt;" in html and "<img src=x>" not in html


def test_share_expiry_is_shown_to_the_visitor(make):
    job = done(make, "Launch")
    share = ShareLink.objects.create(
        job=job,
        created_by=job.created_by,
        expires_at=timezone.make_aware(datetime(2099, 5, 4, 12, 0)),
    )
    html = (
        Client()
        .get(reverse("studio:share-page", args=[services.share_token(share)]))
        .content.decode()
    )
    assert "until May 4, 2099 12:00" in html
