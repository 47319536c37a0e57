"""The DashScope provider and dispatcher over real HTTP against the emulator."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studio import billing, services
from studio.models import (
    FaceCheck,
    GenerationJob,
    LedgerEntry,
    Portrait,
    ProviderAccount,
    RemoteUpload,
    Task,
)
from studio.providers import get_provider
from studio.queue import poll, recovery, slots, submit
from tests import media_factories
from tests.conftest import ASTRONAUT, ROCKET, make_member, upload

pytestmark = pytest.mark.django_db


def tasks_of(emu) -> list[dict]:
    return emu.account_state()["tasks"]


def counts(emu) -> dict:
    return emu.account_state().get("counts", {})


@pytest.fixture
def inputs(emu, alice, team, tmp_path):
    portrait = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    wav = media_factories.make_wav(tmp_path / "voice.wav", 2.0)
    audio = services.audio_submit(team=team, user=alice, upload=upload(wav))
    assert portrait.portrait is not None, portrait.verdict.message
    assert audio.clip is not None
    return portrait.portrait, audio.clip


def queue(alice, team, inputs, enqueued, *, resolution="480P", user=None):
    portrait, audio = inputs
    return services.job_create(
        team=team,
        user=user or alice,
        portrait=portrait,
        audio=audio,
        resolution=resolution,
    )


def drive(job: GenerationJob, *, timeout: float = 30.0) -> GenerationJob:
    """Do what the dispatcher process and workers would, without waiting for timers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_terminal:
            return job
        if job.status == GenerationJob.Status.QUEUED:
            GenerationJob.objects.filter(pk=job.pk).update(not_before=None)
            ProviderAccount.objects.filter(provider=job.provider).update(retry_at=None)
            submit.dispatch_and_submit(provider_name=job.provider)
        else:
            poll.job_poll(job_id=job.pk)
        time.sleep(0.1)
    raise AssertionError(f"job still {job.status} after {timeout} s")


def test_the_remote_check_passes_and_is_cached(emu, alice, team):
    first = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    second = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert first.verdict.check_pass and first.verdict.provider == "dashscope"
    assert second.verdict.pk == first.verdict.pk
    assert counts(emu)["detect_calls"] == 1  # billed once, never twice


def test_a_failed_remote_check_says_what_to_change(emu, alice, team):
    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ROCKET))

    assert not outcome.verdict.check_pass and outcome.portrait is None
    assert outcome.verdict.reason == "InvalidFile.NoHuman"
    assert "one person" in outcome.verdict.message


def test_free_local_checks_run_before_the_paid_call(emu, alice, team, tmp_path):
    small = media_factories.make_portrait(tmp_path / "small.jpg", size=(300, 300))

    outcome = services.portrait_submit(team=team, user=alice, upload=upload(small))

    assert outcome.verdict.reason == "InvalidFile.Resolution.TooSmall"
    assert counts(emu).get("detect_calls", 0) == 0


def test_detect_and_generation_each_upload_under_their_own_model(
    emu, inputs, alice, team, enqueued
):
    job = drive(queue(alice, team, inputs, enqueued))

    models = sorted({u["model"] for u in emu.state()["uploads"]})
    assert models == ["wan2.2-s2v", "wan2.2-s2v-detect"]
    assert job.status == "succeeded"
    # A second job reuses the uploads that are still valid.
    uploads_before = len(emu.state()["uploads"])
    drive(queue(alice, team, inputs, enqueued))
    assert len(emu.state()["uploads"]) == uploads_before
    assert RemoteUpload.objects.count() == uploads_before


def test_a_job_goes_upload_check_submit_poll_store(emu, inputs, alice, team, enqueued):
    job = drive(queue(alice, team, inputs, enqueued, resolution="720P"))

    assert job.status == GenerationJob.Status.SUCCEEDED, job.error_message
    assert len(tasks_of(emu)) == 1  # exactly one remote task per job
    assert job.remote_task_id == tasks_of(emu)[0]["id"]
    assert job.video.name.endswith(".mp4") and job.poster.name.endswith(".jpg")
    assert job.video_duration == pytest.approx(2.0, abs=0.15)
    assert job.width * job.height == pytest.approx(1280 * 720, rel=0.05)
    assert job.cost == (job.billed_seconds * Decimal("0.129018")).quantize(
        Decimal("0.000001")
    )
    assert job.currency == "USD"


def test_a_redelivered_submit_does_not_make_a_second_task(
    emu, inputs, alice, team, enqueued
):
    job = queue(alice, team, inputs, enqueued)
    [claimed] = slots.dispatch(provider_name="dashscope")

    submit.job_submit(job_id=claimed)
    submit.job_submit(job_id=claimed)

    assert len(tasks_of(emu)) == 1
    assert drive(job).status == "succeeded"


def test_throttled_submits_retry_and_never_fail_the_job_by_themselves(
    emu, inputs, alice, team, enqueued
):
    emu.faults(kind="throttle", route="submit", count=3)
    job = queue(alice, team, inputs, enqueued)

    submit.dispatch_and_submit(provider_name="dashscope")
    job.refresh_from_db()
    assert job.status == "queued" and job.not_before > timezone.now()

    job = drive(job)
    assert job.status == "succeeded" and job.attempts == 1
    assert len(tasks_of(emu)) == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "server_error", "route": "task", "count": 2},
        {"kind": "server_error", "route": "task", "count": 1, "status": 503},
        {"kind": "drop", "route": "task", "count": 2},
        {"kind": "throttle", "route": "task", "count": 2},
    ],
    ids=["500", "503", "dropped", "throttled"],
)
def test_poll_errors_are_retried(emu, inputs, alice, team, enqueued, fault):
    emu.faults(fault)

    job = drive(queue(alice, team, inputs, enqueued))

    assert job.status == "succeeded"
    assert len(tasks_of(emu)) == 1


def test_a_provider_failure_is_retried_with_a_new_task_and_not_billed(
    emu, inputs, alice, team, enqueued
):
    emu.faults(kind="fail_task", count=1)

    job = drive(queue(alice, team, inputs, enqueued))

    statuses = [t["status"] for t in tasks_of(emu)]
    assert statuses == ["FAILED", "SUCCEEDED"]
    assert job.status == "succeeded" and job.attempts == 2


@pytest.mark.parametrize(
    ("code", "text"),
    [("DataInspectionFailed", "content check"), ("IPInfringementSuspect", "infringes")],
)
def test_moderation_fails_the_job_with_a_specific_message(
    emu, inputs, alice, team, enqueued, code, text
):
    emu.faults(kind="moderation", code=code)

    job = drive(queue(alice, team, inputs, enqueued))

    assert job.status == "failed" and job.error_code == code
    assert text in job.error_message
    assert job.cost is None


def test_an_account_error_pauses_dispatch_and_tells_admins(
    emu, inputs, alice, alice_client, team, enqueued
):
    emu.faults(kind="account_error", code="Arrearage")
    job = queue(alice, team, inputs, enqueued)

    submit.dispatch_and_submit(provider_name="dashscope")

    job.refresh_from_db()
    account = ProviderAccount.objects.get(provider="dashscope")
    assert job.status == "queued" and job.attempts == 0
    assert account.is_paused and account.paused_code == "Arrearage"
    assert slots.dispatch(provider_name="dashscope") == []  # paused: nothing goes out
    page = alice_client.get(reverse("studio:gallery")).content.decode()
    assert "Generation is paused" in page and "Arrearage" in page
    assert "sk-emulator" not in page

    emu.clear_faults()
    # The account is the whole site's: its team admin may not lift the pause.
    refused = alice_client.post(
        reverse("studio:provider-resume"), {"provider": "dashscope"}
    )
    assert refused.status_code == 403
    assert ProviderAccount.objects.get(provider="dashscope").is_paused
    alice.is_staff = True
    alice.save()
    alice_client.post(reverse("studio:provider-resume"), {"provider": "dashscope"})
    assert drive(job).status == "succeeded"
    assert not ProviderAccount.objects.get(provider="dashscope").is_paused


def test_members_who_are_not_admins_do_not_see_the_account_banner(emu, team):
    bob = make_member(team, "bob")
    ProviderAccount.objects.create(
        provider="dashscope", paused_at=timezone.now(), paused_code="Arrearage"
    )
    from django.test import Client

    client = Client()
    client.force_login(bob)

    assert (
        "Generation is paused"
        not in client.get(reverse("studio:gallery")).content.decode()
    )


def test_an_expired_result_link_fails_with_a_clear_message(
    emu, inputs, alice, team, enqueued
):
    emu.faults(kind="expire_results")

    job = drive(queue(alice, team, inputs, enqueued))

    assert job.status == "failed"
    assert "could not be saved" in job.error_message


def test_a_billed_result_that_could_not_be_saved_is_charged_and_shown(
    emu, inputs, alice, team, enqueued
):
    emu.faults(kind="expire_results")

    job = drive(queue(alice, team, inputs, enqueued, resolution="720P"))

    assert job.status == "failed" and job.error_code == "ResultExpired"
    [task] = tasks_of(emu)
    line = LedgerEntry.objects.get(job=job, kind="generation")
    assert line.billed and line.remote_id == task["id"]
    assert line.seconds == Decimal(str(task["video_duration"]))
    assert line.amount == (line.seconds * Decimal("0.129018")).quantize(
        Decimal("0.000001")
    )
    assert "could not be saved" in line.reason and "ResultExpired" in line.reason
    assert job.cost == line.amount
    # The money is gone: the team's budget counts it.
    checks = sum(e.amount for e in LedgerEntry.objects.filter(kind="check"))
    assert billing.usage(team=team).spent == line.amount + checks
    client = Client()
    client.force_login(alice)
    page = client.get(job.get_absolute_url()).content.decode()
    assert "Spent for nothing" in page and task["id"] in page
    assert "(not billed)" not in page
    spend = client.get(reverse("studio:spend")).content.decode()
    assert 'id="spent-for-nothing"' in spend
    assert task["id"] in spend and job.display_title in spend


def test_an_unknown_task_is_treated_as_expired(emu, inputs, alice, team, enqueued):
    job = queue(alice, team, inputs, enqueued)
    submit.dispatch_and_submit(provider_name="dashscope")
    emu.faults(kind="unknown_task", count=5)

    job = drive(job)

    assert job.status == "failed" and job.error_code == "TaskExpired"


def test_a_task_whose_id_a_crash_lost_is_found_again_not_resubmitted(
    emu, inputs, alice, team, enqueued
):
    job = queue(alice, team, inputs, enqueued)
    [_claimed] = slots.dispatch(provider_name="dashscope")
    # The provider accepts the task, then the worker dies before saving its id.
    provider = get_provider("dashscope")
    job.refresh_from_db()
    from studio.files import stored_path
    from studio.providers.base import GenerationRequest, InputFile

    with (
        stored_path(job.portrait.file.name) as p,
        stored_path(job.audio.file.name) as a,
    ):
        provider.start(
            GenerationRequest(
                job_code=str(job.code),
                portrait=InputFile(p, job.portrait.sha256, job.portrait.file.name),
                audio=InputFile(a, job.audio.sha256, job.audio.file.name),
                resolution="480P",
            ),
            lambda f: None,
        )
    sent_a_while_ago(job)

    recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert job.remote_task_id == tasks_of(emu)[0]["id"]
    assert drive(job).status == "succeeded"
    assert len(tasks_of(emu)) == 1


def sent_a_while_ago(job: GenerationJob) -> None:
    """Date the job's send back far enough for the sweep to look, and recently
    enough that a task created just now could be its answer."""
    sent = timezone.now() - timedelta(seconds=150)
    GenerationJob.objects.filter(pk=job.pk).update(
        submit_started_at=sent, submit_posted_at=sent
    )


def lose_task_id(job: GenerationJob) -> str:
    """The provider accepted the job's task, but the studio forgot its id."""
    job.refresh_from_db()
    task_id = job.remote_task_id
    assert task_id
    GenerationJob.objects.filter(pk=job.pk).update(remote_task_id="", remote_status="")
    sent_a_while_ago(job)
    # Forgotten before anything saved it: the task the claim opened has no id.
    Task.objects.filter(remote_id=task_id).update(
        remote_id="", remote_status="", state=Task.State.PENDING, next_poll_at=None
    )
    return task_id


def test_a_job_whose_saved_task_id_was_lost_is_adopted_through_the_listing(
    emu, inputs, alice, team, enqueued, caplog
):
    job = queue(alice, team, inputs, enqueued)
    submit.dispatch_and_submit(provider_name="dashscope")
    task_id = lose_task_id(job)

    with caplog.at_level("INFO", logger="studio.queue"):
        touched = recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert job.pk in touched
    assert (job.status, job.remote_task_id) == ("submitted", task_id)
    assert f"job {job.pk}: adopted task {task_id}" in caplog.text
    assert counts(emu)["list_queries"] >= 1
    assert drive(job).status == "succeeded"
    assert [t["id"] for t in tasks_of(emu)] == [task_id]  # paid once, not twice


def test_a_failing_listing_is_logged_and_the_job_is_neither_requeued_nor_adopted(
    emu, inputs, alice, team, enqueued, caplog
):
    job = queue(alice, team, inputs, enqueued)
    submit.dispatch_and_submit(provider_name="dashscope")
    task_id = lose_task_id(job)
    emu.faults(kind="server_error", route="list", status=500, count=1)

    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert (job.status, job.remote_task_id, job.attempts) == ("submitted", "", 1)
    assert f"job {job.pk}: lost submit; listing failed" in caplog.text
    assert "InternalError" in caplog.text
    # The next sweep, with the provider answering again, adopts the task.
    recovery.sweep_remote(now=timezone.now())
    job.refresh_from_db()
    assert job.remote_task_id == task_id
    assert drive(job).status == "succeeded"
    assert len(tasks_of(emu)) == 1


def test_a_finished_task_of_another_job_is_not_adopted(
    emu, inputs, alice, team, enqueued, caplog
):
    first = queue(alice, team, inputs, enqueued)
    assert drive(first).status == "succeeded"
    job = queue(alice, team, inputs, enqueued)
    slots.dispatch(provider_name="dashscope")  # sent; the worker died unanswered
    began = timezone.now() - timedelta(minutes=3)
    GenerationJob.objects.filter(pk=job.pk).update(
        submit_started_at=began, submit_posted_at=began
    )

    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert job.status == "queued" and job.remote_task_id == ""
    assert f"job {job.pk}: lost submit; no match in the listing" in caplog.text


@pytest.mark.parametrize(
    "when,adopted", [("after", True), ("before", False)], ids=["made", "not-made"]
)
def test_an_unanswered_submit_is_not_sent_again_but_found_or_requeued_by_the_sweep(
    emu, inputs, alice, team, enqueued, caplog, when, adopted
):
    # "after": the provider made the task, then the connection dropped.
    emu.faults(kind="drop", route="submit", when=when, count=1)
    job = queue(alice, team, inputs, enqueued)

    submit.dispatch_and_submit(provider_name="dashscope")

    job.refresh_from_db()
    assert (job.status, job.remote_task_id) == ("submitted", "")
    assert len(tasks_of(emu)) == (1 if adopted else 0)
    # The job keeps its slot: nothing else is sent meanwhile.
    assert slots.dispatch(provider_name="dashscope") == []
    sent_a_while_ago(job)
    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    if adopted:
        assert job.remote_task_id == tasks_of(emu)[0]["id"]
        assert "adopted task" in caplog.text
    else:
        assert job.status == "queued" and "no match in the listing" in caplog.text
    assert drive(job).status == "succeeded"
    assert len(tasks_of(emu)) == 1  # one task, paid once


def test_a_submit_that_never_reached_the_provider_is_queued_again(
    emu, inputs, alice, team, enqueued, caplog
):
    job = queue(alice, team, inputs, enqueued)
    slots.dispatch(provider_name="dashscope")  # the worker died before sending
    GenerationJob.objects.filter(pk=job.pk).update(
        submit_started_at=timezone.now() - timedelta(minutes=6)
    )

    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 0
    assert "its paid request was never sent" in caplog.text
    assert drive(job).status == "succeeded"


def test_only_one_job_is_in_flight_and_teams_take_turns(
    emu, inputs, alice, team, other_team, enqueued, tmp_path
):
    mallory = make_member(other_team, "mallory2")
    portrait = services.portrait_submit(
        team=other_team, user=mallory, upload=upload(ASTRONAUT)
    ).portrait
    audio = services.audio_submit(
        team=other_team,
        user=mallory,
        upload=upload(media_factories.make_wav(tmp_path / "m.wav", 1.0)),
    ).clip
    a_jobs = [queue(alice, team, inputs, enqueued) for _ in range(3)]
    b_job = services.job_create(
        team=other_team, user=mallory, portrait=portrait, audio=audio, resolution="480P"
    )

    deadline = time.monotonic() + 90
    while GenerationJob.objects.exclude(status__in=GenerationJob.TERMINAL).exists():
        assert time.monotonic() < deadline, "jobs did not finish"
        assert len(submit.dispatch_and_submit(provider_name="dashscope")) <= 1
        assert Task.objects.filter(slots.holding_slot("dashscope")).count() <= 1
        for job in GenerationJob.objects.filter(status__in=GenerationJob.IN_FLIGHT):
            poll.job_poll(job_id=job.pk)
        time.sleep(0.1)

    order = list(
        GenerationJob.objects.order_by("started_at").values_list("pk", flat=True)
    )
    assert order == [a_jobs[0].pk, b_job.pk, a_jobs[1].pk, a_jobs[2].pk]
    assert emu.account_state()["max_running"] == 1


def test_a_pending_task_is_canceled_at_the_provider(
    emu, inputs, alice, team, enqueued, tmp_path
):
    # Another client of the same account holds the provider's only slot.
    provider = get_provider("dashscope")
    from studio.providers.base import InputFile

    long_wav = media_factories.make_wav(tmp_path / "long.wav", 3.0)
    portrait_url = provider.input_url(
        InputFile(ASTRONAUT, "a" * 64), model="wan2.2-s2v"
    )
    audio_url = provider.input_url(InputFile(long_wav, "b" * 64), model="wan2.2-s2v")
    emu.faults(kind="slow", route="result", delay_ms=10)
    blocker = provider.client.submit(
        image_url=portrait_url, audio_url=audio_url, resolution="720P"
    )
    job = queue(alice, team, inputs, enqueued)
    submit.dispatch_and_submit(provider_name="dashscope")
    poll.job_poll(job_id=job.pk)
    job.refresh_from_db()
    assert job.remote_status == "PENDING" and job.can_cancel

    services.job_cancel(job=job)

    job.refresh_from_db()
    statuses = {t["id"]: t["status"] for t in tasks_of(emu)}
    assert job.status == "canceled" and statuses[job.remote_task_id] == "CANCELED"
    assert blocker.task_id in statuses


def test_a_running_task_cannot_be_canceled(emu, inputs, alice, team, enqueued):
    job = queue(alice, team, inputs, enqueued)
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", remote_task_id="t-1", remote_status="RUNNING", attempts=1
    )
    job.refresh_from_db()

    with pytest.raises(services.Rejected, match="running task cannot be canceled"):
        services.job_cancel(job=job)


def test_inputs_can_reach_the_provider_as_signed_app_links(
    emu, alice, team, settings, live_server
):
    settings.S2V_INPUT_URLS = "public"
    settings.S2V_PUBLIC_BASE_URL = live_server.url

    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert outcome.verdict.check_pass
    assert emu.state()["uploads"] == []  # fetched from the app, not uploaded


def test_a_tampered_public_link_is_404(client):
    assert (
        client.get(
            reverse("studio:public-input", args=["not-a-valid-token"])
        ).status_code
        == 404
    )


def test_the_verdict_cache_is_per_engine(emu, alice, team, settings):
    services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    settings.S2V_PROVIDER = "local"
    services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert sorted(FaceCheck.objects.values_list("provider", flat=True)) == [
        "dashscope",
        "local",
    ]


def test_remote_jobs_wait_for_the_dispatcher_instead_of_rendering(
    emu, inputs, alice, team, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        queue(alice, team, inputs, enqueued)

    assert enqueued == [("studio.tasks.dispatch", ("dashscope",))]


# -- the paid portrait check under transient faults -------------------------------


def check_entries() -> list[tuple[bool, str]]:
    return list(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHECK)
        .order_by("pk")
        .values_list("billed", "reason")
    )


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "server_error", "status": 500},
        {"kind": "server_error", "status": 503},
        {"kind": "drop", "when": "before"},
    ],
    ids=["500", "503", "dropped"],
)
def test_a_transient_fault_on_the_portrait_check_is_retried_once(
    emu, alice, team, fault
):
    emu.faults(route="detect", count=1, **fault)

    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert outcome.verdict is not None and outcome.verdict.check_pass
    assert outcome.portrait is not None
    assert counts(emu)["detect_calls"] == 1
    assert emu.state()["faults"] == []  # the fault was hit, once
    [failed, paid] = check_entries()
    assert failed[0] is False and failed[1].startswith("call failed")
    assert paid == (True, "passed")


def test_a_throttled_portrait_check_is_not_retried_at_once(emu, alice, team):
    emu.faults(kind="throttle", route="detect", count=1)

    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert outcome.portrait is None and outcome.unchecked is not None
    assert counts(emu).get("detect_calls", 0) == 0
    assert check_entries() == [(False, "call failed: Throttling.RateQuota")]


def test_when_the_check_keeps_failing_the_portrait_is_kept_to_check_again(
    emu, alice, alice_client, team
):
    emu.faults(kind="server_error", route="detect", status=500, count=2)

    first = alice_client.post(
        reverse("studio:portrait-check"),
        {"portrait_file": upload(ASTRONAUT)},
        headers={"HX-Request": "true"},
    ).content.decode()

    assert "did not answer" in first and "Check again" in first
    assert "choose the file again" not in first.lower()
    [kept] = Portrait.objects.all()
    assert f'name="portrait" value="{kept.code}"' in first
    assert not FaceCheck.objects.exists()
    assert counts(emu).get("detect_calls", 0) == 0

    again = alice_client.post(
        reverse("studio:portrait-recheck"),
        {"portrait": str(kept.code)},
        headers={"HX-Request": "true"},
    ).content.decode()

    assert "Face found" in again and "Check again" not in again
    assert f'type="hidden" name="portrait" value="{kept.code}"' in again
    assert Portrait.objects.count() == 1  # no second upload, no second file
    assert counts(emu)["detect_calls"] == 1
    assert [billed for billed, _ in check_entries()] == [False, False, True]


def test_check_again_is_limited_to_the_team_s_own_portraits(
    emu, alice, team, other_team
):
    emu.faults(kind="server_error", route="detect", status=500, count=2)
    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    mallory = make_member(other_team, "mallory3")
    client = Client()
    client.force_login(mallory)

    html = client.post(
        reverse("studio:portrait-recheck"),
        {"portrait": str(outcome.unchecked.code)},
        headers={"HX-Request": "true"},
    ).content.decode()

    assert "That portrait is gone" in html
    assert counts(emu).get("detect_calls", 0) == 0
