"""Jobs: creation, the worker's run, cancel, retry, recovery, and the live status."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import av
import pytest
from django.urls import reverse
from django.utils import timezone

from studio import services, tasks
from studio.models import GenerationJob
from studio.providers.base import ProviderError
from studio.providers.local import LocalProvider
from tests.conftest import ASTRONAUT, ROCKET, upload

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def job(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    return services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )


def test_generate_creates_a_job_and_queues_it_after_commit(
    alice_client, checked_inputs, enqueued, django_capture_on_commit_callbacks
):
    portrait, audio = checked_inputs

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("studio:job-create"),
            {
                "portrait": portrait.code,
                "audio": audio.code,
                "resolution": "720P",
                "title": " Welcome ",
            },
            headers=HTMX,
        )

    job = GenerationJob.objects.get()
    assert response["HX-Redirect"] == job.get_absolute_url()
    assert (job.status, job.resolution, job.provider, job.title) == (
        "queued",
        "720P",
        "local",
        "Welcome",
    )
    assert enqueued == [("studio.tasks.job_run", (job.pk,))]


def test_generate_without_checked_inputs_explains_what_is_missing(
    alice_client, enqueued
):
    response = alice_client.post(
        reverse("studio:job-create"), {"resolution": "480P"}, headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Choose a portrait that passes the check first" in html
    assert not GenerationJob.objects.exists()


def test_generate_with_another_teams_inputs_is_refused(
    mallory_client, checked_inputs, enqueued
):
    portrait, audio = checked_inputs

    response = mallory_client.post(
        reverse("studio:job-create"),
        {"portrait": portrait.code, "audio": audio.code, "resolution": "480P"},
        headers=HTMX,
    )

    assert "were not found" in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_job_create_refuses_a_portrait_that_failed_the_check(
    alice, team, checked_inputs, enqueued
):
    _, audio = checked_inputs
    portrait, _ = checked_inputs
    portrait.sha256 = (
        "0" * 64
    )  # a verdict for other bytes: force a fresh, failing check
    portrait.save()
    from studio.models import FaceCheck

    FaceCheck.objects.create(
        sha256="0" * 64,
        provider="local",
        check_pass=False,
        humanoid=False,
        reason="InvalidFile.NoHuman",
        message="No face found.",
    )

    with pytest.raises(services.Rejected, match="No face found"):
        services.job_create(
            team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
        )


def test_the_worker_renders_the_video_into_storage(job, enqueued):
    tasks.job_run(job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert job.attempts == 1 and job.progress == 1.0
    assert job.started_at <= job.finished_at
    assert job.video.name.endswith(".mp4") and job.poster.name.endswith(".jpg")
    assert job.video_duration == pytest.approx(2.0, abs=0.1)
    assert abs(job.billed_seconds - 2) < Decimal("0.1")
    assert job.cost == Decimal("0") and job.currency == "USD"
    assert job.width * job.height == pytest.approx(640 * 480, rel=0.05)
    with job.video.open("rb") as fh, av.open(fh) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"


def test_a_redelivered_message_does_not_run_the_job_twice(job, monkeypatch):
    tasks.job_run(job.pk)
    monkeypatch.setattr(
        LocalProvider, "start", lambda *a: pytest.fail("rendered twice")
    )

    tasks.job_run(job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED and job.attempts == 1


def test_an_engine_error_fails_the_job_with_its_message(job, monkeypatch):
    def broken(self, request, progress):
        raise ProviderError(
            "The audio could not be decoded.", code="InvalidFile.Openerror"
        )

    monkeypatch.setattr(LocalProvider, "start", broken)

    tasks.job_run(job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert job.error_code == "InvalidFile.Openerror"
    assert job.error_message == "The audio could not be decoded."
    assert job.finished_at is not None


def test_an_unexpected_crash_fails_the_job_with_a_plain_message(job, monkeypatch):
    monkeypatch.setattr(LocalProvider, "start", lambda *a: 1 / 0)

    tasks.job_run(job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert "unexpected error" in job.error_message
    assert "ZeroDivision" not in job.error_message


def test_cancel_stops_a_queued_job_before_it_runs(alice_client, job, monkeypatch):
    response = alice_client.post(reverse("studio:job-cancel", args=[job.code]))
    monkeypatch.setattr(
        LocalProvider, "start", lambda *a: pytest.fail("ran a canceled job")
    )
    tasks.job_run(job.pk)

    job.refresh_from_db()
    assert response.status_code == 302
    assert job.status == GenerationJob.Status.CANCELED


def test_a_running_job_cannot_be_canceled(alice_client, job):
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING)

    response = alice_client.post(
        reverse("studio:job-cancel", args=[job.code]), follow=True
    )

    assert "a running task cannot be canceled" in response.content.decode()
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.RUNNING


def test_retry_queues_a_linked_job_with_the_same_inputs(alice_client, job, enqueued):
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.FAILED)

    response = alice_client.post(reverse("studio:job-retry", args=[job.code]))

    new = GenerationJob.objects.exclude(pk=job.pk).get()
    assert response.url == new.get_absolute_url()
    assert new.retry_of == job
    assert (new.portrait, new.audio, new.resolution, new.status) == (
        job.portrait,
        job.audio,
        job.resolution,
        "queued",
    )


def test_a_succeeded_job_cannot_be_retried(alice, job):
    with pytest.raises(services.Rejected):
        services.job_retry(job=job, user=alice)  # still queued


def _stall(job, *, attempts: int, minutes_ago: int = 5) -> None:
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING,
        attempts=attempts,
        heartbeat_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_the_sweep_requeues_a_job_whose_worker_died(
    job, enqueued, run_enqueued, django_capture_on_commit_callbacks
):
    enqueued.clear()
    _stall(job, attempts=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep() == [job.pk]
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED

    run_enqueued()
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED and job.attempts == 2


def test_the_sweep_fails_a_job_after_its_last_attempt(job, settings):
    settings.S2V_MAX_ATTEMPTS = 2
    _stall(job, attempts=2)

    services.jobs_sweep()

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert job.error_code == "worker_lost"
    assert "worker stopped" in job.error_message


def test_the_sweep_leaves_jobs_with_a_fresh_heartbeat_alone(job):
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING, attempts=1, heartbeat_at=timezone.now()
    )

    assert services.jobs_sweep() == []


def test_a_worker_whose_job_was_taken_over_drops_its_render(job, monkeypatch):
    monkeypatch.setattr("studio.services.jobs.PROGRESS_EVERY", 0)

    def render_then_lose(self, request, progress):
        # The sweep hands the job to attempt 2 while this attempt renders.
        GenerationJob.objects.filter(pk=job.pk).update(attempts=2)
        progress(0.5)
        pytest.fail("progress() should have stopped this render")

    monkeypatch.setattr(LocalProvider, "start", render_then_lose)

    assert services.job_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert (
        job.status == GenerationJob.Status.RUNNING and not job.video
    )  # left to attempt 2


def test_status_fragment_polls_while_queued(alice_client, job):
    response = alice_client.get(
        reverse("studio:job-status", args=[job.code]), headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in html
    assert "1st in line" in html
    assert "ready in about" in html


def test_status_fragment_stops_polling_when_the_job_is_done(alice_client, job):
    tasks.job_run(job.pk)

    response = alice_client.get(
        reverse("studio:job-status", args=[job.code]), headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 286
    assert "hx-trigger" not in html
    assert "<video" in html
    assert "job-finished" in response["HX-Trigger"]


def test_queue_position_and_eta_count_the_jobs_ahead(
    alice, team, checked_inputs, enqueued
):
    from studio.selectors import job_progress

    portrait, audio = checked_inputs
    jobs = [
        services.job_create(
            team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
        )
        for _ in range(3)
    ]

    first, _, last = (job_progress(job=j) for j in jobs)

    assert (first.position, last.position) == (1, 3)
    assert last.eta_seconds > first.eta_seconds > 0


def test_job_detail_shows_inputs_verdict_and_timings(alice_client, job):
    tasks.job_run(job.pk)

    html = alice_client.get(job.get_absolute_url()).content.decode()

    assert "Passed" in html
    assert "Local preview" in html
    assert reverse("studio:job-video", args=[job.code]) in html
    assert reverse("studio:portrait-file", args=[job.portrait.code]) in html


def test_rename_changes_the_title(alice_client, job):
    response = alice_client.post(
        reverse("studio:job-rename", args=[job.code]),
        {"title": "Launch teaser"},
        headers=HTMX,
    )

    job.refresh_from_db()
    assert job.title == "Launch teaser"
    assert 'value="Launch teaser"' in response.content.decode()


def test_portrait_check_service_caches_failures_too(alice, team):
    first = services.portrait_submit(team=team, user=alice, upload=upload(ROCKET))
    second = services.portrait_submit(team=team, user=alice, upload=upload(ROCKET))

    assert first.verdict.pk == second.verdict.pk
    assert first.portrait is None


def test_a_portrait_passes_then_is_reused_by_job_create(alice, team, checked_inputs):
    again = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert again.portrait == checked_inputs[0]


def test_with_redis_the_sweep_resends_jobs_queued_too_long(
    job, enqueued, settings, django_capture_on_commit_callbacks
):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://127.0.0.1:6379/0"}
    enqueued.clear()
    old = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"] + 60)
    GenerationJob.objects.filter(pk=job.pk).update(queued_at=old)

    with django_capture_on_commit_callbacks(execute=True):
        first = services.jobs_sweep()
    with django_capture_on_commit_callbacks(execute=True):
        second = services.jobs_sweep()  # within the period: not again

    assert first == [job.pk] and second == []
    assert enqueued == [("studio.tasks.job_run", (job.pk,))]


def test_a_title_over_its_limit_is_refused_not_cut(
    alice, team, checked_inputs, enqueued
):
    # The generate command and any later caller go through the same service.
    portrait, audio = checked_inputs
    with pytest.raises(services.Rejected) as refused:
        services.job_create(
            team=team,
            user=alice,
            portrait=portrait,
            audio=audio,
            resolution="480P",
            title="x" * 121,
        )
    assert refused.value.message == (
        "Keep the title to 120 characters; this one has 121."
    )
    assert not GenerationJob.objects.exists()
