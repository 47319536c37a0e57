"""The team gallery, private media, and team boundaries."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from studio import services, tasks
from studio.models import GenerationJob, Membership, Team
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def done_job(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    job = services.job_create(
        team=team,
        user=alice,
        portrait=portrait,
        audio=audio,
        resolution="480P",
        title="Intro",
    )
    tasks.job_run(job.pk)
    job.refresh_from_db()
    return job


def make_jobs(count, *, team, user, portrait, audio, **fields):
    return GenerationJob.objects.bulk_create(
        GenerationJob(
            team=team,
            created_by=user,
            portrait=portrait,
            audio=audio,
            provider="local",
            **fields,
        )
        for _ in range(count)
    )


def test_gallery_lists_the_teams_videos_newest_first(
    alice_client, done_job, alice, team, checked_inputs
):
    portrait, audio = checked_inputs
    make_jobs(1, team=team, user=alice, portrait=portrait, audio=audio, title="Later")

    html = alice_client.get(reverse("studio:gallery")).content.decode()

    assert html.index("Later") < html.index("Intro")
    assert reverse("studio:job-video", args=[done_job.code]) in html
    assert reverse("studio:job-poster", args=[done_job.code]) in html


def test_gallery_filters_by_author_status_and_resolution(
    alice_client, alice, team, checked_inputs
):
    portrait, audio = checked_inputs
    bob = make_member(team, "bob")
    make_jobs(
        1,
        team=team,
        user=alice,
        portrait=portrait,
        audio=audio,
        title="A-480",
        status="succeeded",
    )
    make_jobs(
        1,
        team=team,
        user=bob,
        portrait=portrait,
        audio=audio,
        title="B-720",
        resolution="720P",
        status="failed",
    )

    def titles(**query):
        html = alice_client.get(
            reverse("studio:gallery"), query, headers=HTMX
        ).content.decode()
        return {t for t in ("A-480", "B-720") if t in html}

    assert titles() == {"A-480", "B-720"}
    assert titles(author="bob") == {"B-720"}
    assert titles(status="succeeded") == {"A-480"}
    assert titles(resolution="720P") == {"B-720"}
    assert titles(status="nonsense") == {"A-480", "B-720"}  # bad filters are ignored


def test_gallery_answers_htmx_with_the_grid_alone(alice_client, alice):
    full = alice_client.get(reverse("studio:gallery"))
    fragment = alice_client.get(reverse("studio:gallery"), headers=HTMX)

    assert "<html" in full.content.decode()
    assert "<html" not in fragment.content.decode()
    assert fragment.content.decode().lstrip().startswith('<section id="gallery-grid"')
    assert "HX-Request" in fragment["Vary"]


def test_gallery_paginates_and_links_keep_the_filters(
    alice_client, alice, team, checked_inputs
):
    portrait, audio = checked_inputs
    make_jobs(
        30, team=team, user=alice, portrait=portrait, audio=audio, status="failed"
    )

    html = alice_client.get(
        reverse("studio:gallery"), {"status": "failed"}
    ).content.decode()

    assert "Page 1 of 3" in html
    assert "status=failed&amp;page=2" in html
    assert 'hx-push-url="true"' in html


def test_gallery_query_count_does_not_grow_with_the_page(
    alice_client, alice, team, checked_inputs, django_assert_max_num_queries
):
    portrait, audio = checked_inputs
    make_jobs(
        1, team=team, user=alice, portrait=portrait, audio=audio, status="succeeded"
    )
    with django_assert_max_num_queries(50) as small:
        alice_client.get(reverse("studio:gallery"))
    make_jobs(
        11, team=team, user=alice, portrait=portrait, audio=audio, status="queued"
    )
    make_jobs(
        11, team=team, user=alice, portrait=portrait, audio=audio, status="succeeded"
    )

    with django_assert_max_num_queries(50) as full:
        alice_client.get(reverse("studio:gallery"))

    assert len(full.captured_queries) == len(small.captured_queries)


def test_a_running_card_polls_and_a_finished_card_stops(
    alice_client, done_job, alice, team, checked_inputs
):
    portrait, audio = checked_inputs
    [queued] = make_jobs(1, team=team, user=alice, portrait=portrait, audio=audio)

    running = alice_client.get(
        reverse("studio:job-card", args=[queued.code]), headers=HTMX
    )
    finished = alice_client.get(
        reverse("studio:job-card", args=[done_job.code]), headers=HTMX
    )

    assert running.status_code == 200 and "hx-trigger" in running.content.decode()
    assert "1 in line" in running.content.decode()
    assert finished.status_code == 286 and "hx-trigger" not in finished.content.decode()


def test_video_is_served_with_range_support(alice_client, done_job):
    url = reverse("studio:job-video", args=[done_job.code])

    whole = alice_client.get(url)
    part = alice_client.get(url, headers={"Range": "bytes=0-99"})
    tail = alice_client.get(url, headers={"Range": "bytes=-10"})
    beyond = alice_client.get(url, headers={"Range": "bytes=999999999-"})

    size = done_job.video.size
    assert whole.status_code == 200 and whole["Content-Type"] == "video/mp4"
    assert int(whole["Content-Length"]) == size
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 0-99/{size}"
    assert len(b"".join(part.streaming_content)) == 100
    assert len(b"".join(tail.streaming_content)) == 10
    assert beyond.status_code == 416


def test_download_sets_an_attachment_name(alice_client, done_job):
    response = alice_client.get(
        reverse("studio:job-video", args=[done_job.code]) + "?download"
    )

    assert response["Content-Disposition"] == 'attachment; filename="Intro 480P.mp4"'


def test_media_is_never_under_a_public_media_url(alice_client, done_job):
    assert alice_client.get("/media/" + done_job.video.name).status_code == 404


def test_everything_of_a_team_is_404_to_outsiders(mallory_client, done_job):
    codes = {"code": done_job.code}
    urls = [
        reverse(name, kwargs=codes)
        for name in (
            "studio:job-detail",
            "studio:job-status",
            "studio:job-card",
            "studio:job-video",
            "studio:job-poster",
        )
    ] + [
        reverse("studio:portrait-file", args=[done_job.portrait.code]),
        reverse("studio:audio-file", args=[done_job.audio.code]),
    ]
    posts = [
        reverse(name, kwargs=codes)
        for name in ("studio:job-cancel", "studio:job-retry", "studio:job-rename")
    ]

    for url in urls:
        assert mallory_client.get(url).status_code == 404, url
    for url in posts:
        assert mallory_client.post(url).status_code == 404, url
    assert "Intro" not in mallory_client.get(reverse("studio:gallery")).content.decode()


def test_signed_out_visitors_are_sent_to_sign_in(done_job):
    response = Client().get(reverse("studio:job-video", args=[done_job.code]))

    assert response.status_code == 302 and "/accounts/login/" in response.url


def test_switching_teams_changes_what_the_gallery_shows(alice, alice_client, done_job):
    second = Team.objects.create(name="Second", slug="second")
    Membership.objects.create(user=alice, team=second)

    alice_client.post(reverse("studio:team-switch"), {"team": second.code})
    in_second = alice_client.get(reverse("studio:gallery")).content.decode()
    assert "Intro" not in in_second
    assert alice_client.get(done_job.get_absolute_url()).status_code == 404


def test_switching_to_a_team_you_are_not_in_is_404(alice_client, other_team):
    response = alice_client.post(
        reverse("studio:team-switch"), {"team": other_team.code}
    )

    assert response.status_code == 404


def test_a_user_without_a_team_is_told_so(db):
    from studio.models import User

    client = Client()
    client.force_login(User.objects.create_user("loner"))

    response = client.get(reverse("studio:job-create"))

    assert response.status_code == 403
    assert "not in a team" in response.content.decode()
