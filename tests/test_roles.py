"""Who may do what to a video, and how a refusal looks."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studio.models import GenerationJob, Membership, ProviderAccount, ShareLink
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def people(team, alice, mallory):
    """Acme's author bob (a member), mia (another member), rita (a reviewer), alice
    (an admin), and mallory of Globex."""
    return {
        "author": make_member(team, "bob"),
        "member": make_member(team, "mia"),
        "reviewer": make_member(team, "rita", Membership.Role.REVIEWER),
        "admin": alice,
        "outsider": mallory,
    }


@pytest.fixture
def bobs_job(team, people, checked_inputs):
    """make(status): a job of bob's; a finished one has a video and a share link."""
    portrait, audio = checked_inputs

    def make(status=GenerationJob.Status.QUEUED):
        job = GenerationJob.objects.create(
            team=team,
            created_by=people["author"],
            portrait=portrait,
            audio=audio,
            provider="local",
            title="Bob's take",
            notes="bob's notes",
            status=status,
        )
        if status == GenerationJob.Status.SUCCEEDED:
            job.video.save("video.mp4", ContentFile(b"mp4"))
            ShareLink.objects.create(
                job=job,
                created_by=people["author"],
                expires_at=timezone.now() + timedelta(days=7),
            )
        return job

    return make


def _state(job):
    job.refresh_from_db()
    share = job.shares.first()
    return (job.status, job.title, job.notes, share and share.revoked_at)


# Each action: the job it needs, its request, and how to tell that it happened.
ACTIONS = {
    "cancel": (
        GenerationJob.Status.QUEUED,
        lambda job: (reverse("studio:job-cancel", args=[job.code]), {}),
        lambda job: job.status == GenerationJob.Status.CANCELED,
    ),
    "rename": (
        GenerationJob.Status.QUEUED,
        lambda job: (
            reverse("studio:job-rename", args=[job.code]),
            {"title": "Renamed"},
        ),
        lambda job: job.title == "Renamed",
    ),
    "notes": (
        GenerationJob.Status.SUCCEEDED,
        lambda job: (
            reverse("studio:job-notes", args=[job.code]),
            {"notes": "New notes"},
        ),
        lambda job: job.notes == "New notes",
    ),
    "revoke": (
        GenerationJob.Status.SUCCEEDED,
        lambda job: (
            reverse("studio:share-revoke", args=[job.shares.get().code]),
            {},
        ),
        lambda job: job.shares.get().revoked_at is not None,
    ),
}
EXPECTED = {"author": 302, "member": 403, "reviewer": 302, "admin": 302}
EXPECTED["outsider"] = 404


@pytest.mark.parametrize("action", ACTIONS)
def test_job_actions_are_for_the_author_reviewers_and_admins(action, people, bobs_job):
    status, request_for, happened = ACTIONS[action]
    for role, expected in EXPECTED.items():
        job = bobs_job(status)
        before = _state(job)
        url, data = request_for(job)

        response = client_for(people[role]).post(url, data)

        assert response.status_code == expected, (action, role)
        job.refresh_from_db()
        if expected == 302:
            assert happened(job), (action, role)
        else:
            assert _state(job) == before, (action, role)


def test_a_member_sees_no_buttons_for_what_others_own(people, bobs_job):
    job = bobs_job(GenerationJob.Status.QUEUED)
    page = client_for(people["member"]).get(job.get_absolute_url()).content.decode()
    own = client_for(people["author"]).get(job.get_absolute_url()).content.decode()

    for form in ("job-cancel", "job-rename", "job-notes"):
        url = reverse(f"studio:{form}", args=[job.code])
        assert url not in page, form
        assert url in own, form


def test_a_refused_member_gets_the_studios_403_page_without_a_traceback(
    people, bobs_job, caplog
):
    job = bobs_job(GenerationJob.Status.SUCCEEDED)
    caplog.set_level(logging.WARNING)

    response = client_for(people["member"]).post(
        reverse("studio:job-review", args=[job.code]), {"decision": "approved"}
    )

    html = response.content.decode()
    assert response.status_code == 403
    assert "S2V Studio" in html and 'class="container"' in html  # base.html
    assert "Only reviewers and team admins can review videos." in html
    assert "<strong>alice</strong>" in html  # whom to ask
    # Django still notes the 403 as a warning, but with no traceback.
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    job.refresh_from_db()
    assert job.review_state == "none"


def test_a_refusal_over_htmx_lands_in_the_alert_area(people, bobs_job):
    job = bobs_job(GenerationJob.Status.SUCCEEDED)

    response = client_for(people["member"]).post(
        reverse("studio:job-notes", args=[job.code]), {"notes": "x"}, headers=HTMX
    )

    assert response["HX-Retarget"] == "#alerts"
    assert "Only the video&#x27;s author, a reviewer or a team admin" in (
        response.content.decode()
    )
    job.refresh_from_db()
    assert job.notes == "bob's notes"


@pytest.fixture
def paused():
    return ProviderAccount.objects.create(
        provider="dashscope", paused_at=timezone.now(), paused_code="Arrearage"
    )


def test_team_admins_see_the_paused_banner_but_only_staff_can_resume(
    alice, paused, caplog
):
    resume = reverse("studio:provider-resume")
    admin = client_for(alice)

    page = admin.get(reverse("studio:gallery")).content.decode()
    assert "Generation is paused" in page
    assert resume not in page

    caplog.set_level(logging.WARNING)
    refused = admin.post(resume, {"provider": "dashscope"})
    assert refused.status_code == 403
    assert "Only site staff can resume the provider account" in (
        refused.content.decode()
    )
    assert not [r for r in caplog.records if r.exc_info]
    paused.refresh_from_db()
    assert paused.is_paused

    alice.is_staff = True
    alice.save()
    assert resume in admin.get(reverse("studio:gallery")).content.decode()
    assert admin.post(resume, {"provider": "dashscope"}).status_code == 302
    paused.refresh_from_db()
    assert not paused.is_paused


def test_a_member_without_a_team_admin_role_cannot_resume_either(team, paused):
    bob = make_member(team, "bob")

    assert client_for(bob).post(reverse("studio:provider-resume")).status_code == 403
    paused.refresh_from_db()
    assert paused.is_paused
