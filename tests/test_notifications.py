"""Notifications: a badge and a list in the app, and the same by email."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from studio import lifecycle, notifications, services, tasks
from studio.models import GenerationJob, JobComment, Notification
from tests.conftest import make_member
from tests.live import REPO_ROOT
from tests.test_dashscope_flow import (  # noqa: F401 (the inputs fixture is used by name)
    drive,
    inputs,
    queue,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def alice_mail(alice):
    alice.email = "alice@example.com"
    alice.save()
    return alice


@pytest.fixture
def queued(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    return services.job_create(
        team=team,
        user=alice,
        portrait=portrait,
        audio=audio,
        resolution="480P",
        title="Intro",
    )


def test_a_finished_job_tells_its_author_in_the_app_and_by_email(
    alice_mail, queued, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        tasks.job_run(queued.pk)

    notice = Notification.objects.get()
    assert (notice.user, notice.kind, notice.job) == (
        alice_mail,
        "job_succeeded",
        queued,
    )
    assert notice.message == "“Intro” is ready."
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["alice@example.com"] and mail.subject == "“Intro” is ready."
    assert queued.get_absolute_url() in mail.body


def test_a_job_the_sweep_gives_up_on_tells_its_author_why(alice, queued, settings):
    GenerationJob.objects.filter(pk=queued.pk).update(
        status="running",
        attempts=settings.S2V_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )

    services.jobs_sweep()

    notice = Notification.objects.get(kind="job_failed")
    assert notice.user == alice
    assert notice.message.startswith("“Intro” failed: The worker stopped")


def test_a_remote_failure_tells_the_author_too(alice, queued):
    GenerationJob.objects.filter(pk=queued.pk).update(status="running")

    lifecycle.fail(
        GenerationJob.objects.filter(pk=queued.pk, status__in=GenerationJob.IN_FLIGHT),
        code="DataInspectionFailed",
        message="The provider's moderation refused the audio.",
    )

    notice = Notification.objects.get()
    assert notice.kind == "job_failed" and "moderation" in notice.message


def test_a_remote_job_tells_its_author_once_its_video_is_stored(
    request, alice, team, enqueued
):
    # The DashScope flow's fixtures: the emulator and inputs checked through it.
    request.getfixturevalue("emu")
    job = drive(queue(alice, team, request.getfixturevalue("inputs"), enqueued))

    assert job.status == "succeeded"
    notice = Notification.objects.get()
    assert (notice.kind, notice.job) == ("job_succeeded", job)


def test_a_job_is_announced_once_and_only_when_it_ended(alice, queued):
    assert notifications.notify_job_finished(queued.pk) is None  # still queued
    GenerationJob.objects.filter(pk=queued.pk).update(status="canceled")
    assert notifications.notify_job_finished(queued.pk) is None  # canceled: no news
    GenerationJob.objects.filter(pk=queued.pk).update(status="succeeded")

    first = notifications.notify_job_finished(queued.pk)
    again = notifications.notify_job_finished(queued.pk)

    assert first is not None and again is None
    assert Notification.objects.count() == 1
    assert notifications.notify_job_finished(999_999) is None


def test_nobody_is_told_about_their_own_comment(alice, alice_client, queued):
    alice_client.post(
        reverse("studio:job-comment", args=[queued.code]), {"text": "note to self"}
    )
    assert JobComment.objects.count() == 1
    assert not Notification.objects.exists()


def test_no_email_without_an_address_and_a_broken_mail_server_breaks_nothing(
    alice_mail, team, queued, monkeypatch, django_capture_on_commit_callbacks
):
    bob = make_member(team, "bob")

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("no SMTP here")

    monkeypatch.setattr("studio.notifications.send_mail", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        services.job_comment(job=queued, user=bob, text="Nice")

    assert Notification.objects.filter(user=alice_mail, kind="comment").exists()


def test_the_badge_counts_unread_and_the_list_marks_them_read(
    alice, alice_client, team, queued
):
    bob = make_member(team, "bob")
    services.job_comment(job=queued, user=bob, text="First <i>thought</i>")
    services.job_comment(job=queued, user=bob, text="Second")

    page = alice_client.get(reverse("studio:gallery")).content.decode()
    assert 'data-unread="2"' in page
    badge = alice_client.get(
        reverse("studio:notification-badge"), headers=HTMX
    ).content.decode()
    assert badge.lstrip().startswith('<a id="notification-badge"')
    assert 'data-unread="2"' in badge and "every 60s" in badge

    listing = alice_client.get(reverse("studio:notifications")).content.decode()
    assert listing.count('class="notice kind-comment unread"') == 2
    assert "bob commented on “Intro”: First &lt;i&gt;thought&lt;/i&gt;" in listing
    assert queued.get_absolute_url() in listing
    assert "data-unread" not in listing  # seen now

    again = alice_client.get(reverse("studio:notifications")).content.decode()
    assert "unread" not in again.split('id="notification-list"')[1]
    assert (
        "data-unread"
        not in alice_client.get(reverse("studio:gallery")).content.decode()
    )


def test_notifications_are_per_team(alice, alice_client, queued, other_team):
    Notification.objects.create(
        user=alice, team=other_team, kind="comment", message="From Globex"
    )
    Notification.objects.create(
        user=alice, team=queued.team, job=queued, kind="comment", message="From Acme"
    )

    listing = alice_client.get(reverse("studio:notifications")).content.decode()

    assert "From Acme" in listing and "From Globex" not in listing


def _list_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("studio:notifications")).status_code == 200
    return len(captured.captured_queries)


def test_the_notification_page_makes_a_fixed_number_of_queries(
    alice, alice_client, team, queued
):
    bob = make_member(team, "bob")
    services.job_comment(job=queued, user=bob, text="one")
    one = _list_queries(alice_client)
    for n in range(30):
        services.job_comment(job=queued, user=bob, text=f"more {n}")
    Notification.objects.create(user=alice, team=team, kind="comment", message="x")

    assert _list_queries(alice_client) == one


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "console.EmailBackend None False"),
        (
            {"S2V_SMTP_HOST": "smtp.example.com", "S2V_SMTP_USER": "studio"},
            "smtp.EmailBackend smtp.example.com True",
        ),
        (
            {"S2V_SMTP_HOST": "smtp.example.com", "S2V_SMTP_SSL": "true"},
            "smtp.EmailBackend smtp.example.com False",
        ),
    ],
)
def test_email_goes_to_the_console_unless_smtp_is_configured(env, expected, tmp_path):
    code = (
        "from django.conf import settings as s;"
        "print(s.EMAIL_BACKEND.rsplit('.', 2)[-2] + '.' + s.EMAIL_BACKEND.rsplit('.', 1)[-1],"
        " getattr(s, 'EMAIL_HOST', None) if s.EMAIL_BACKEND.endswith('smtp.EmailBackend') else None,"
        " s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=REPO_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "s2vsite.settings",
            "S2V_DATA_DIR": str(tmp_path),
            "S2V_EMAIL_FROM": "Studio <studio@example.com>",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"{expected} Studio <studio@example.com>"
