"""The WaveSpeed provider and the dispatcher over real HTTP against its emulator.

Everything goes through the studio's services and the dispatcher (never the
client directly): inputs are stored, a job is queued, `dispatch`/`job_submit`
upload the inputs and create the prediction, `job_poll` follows it and copies
the result into storage, and `billing` writes the ledger line. The emulator
runs at time_scale 1000 (tasks take a few ms; the rate-limit minute is 60 ms).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from studio import services
from studio.emulators.wavespeed import sign
from studio.files import stored_path
from studio.media.video import probe_video
from studio.models import (
    GenerationJob,
    LedgerEntry,
    ProviderAccount,
    RemoteUpload,
    Task,
)
from studio.providers import get_provider
from studio.queue import poll, recovery, slots, submit
from tests import media_factories
from tests.conftest import ASTRONAUT, upload

pytestmark = pytest.mark.django_db

PROVIDER = "wavespeed-emulator"
# §9.5: 480p $0.15 per 5 s, 720p $0.30 per 5 s.
PRICE = {"480P": Decimal("0.03"), "720P": Decimal("0.06")}


# -- helpers ------------------------------------------------------------------------


def predictions(ws: Any) -> list[dict[str, Any]]:
    """The emulator's predictions, oldest first."""
    return sorted(ws.state()["predictions"], key=lambda p: p["created"])


def inputs_for(alice: Any, team: Any, wav: Path) -> tuple[Any, Any]:
    portrait = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    audio = services.audio_submit(team=team, user=alice, upload=upload(wav))
    assert portrait.portrait is not None, portrait.verdict.message
    assert audio.clip is not None
    return portrait.portrait, audio.clip


@pytest.fixture
def inputs(ws_emu: Any, alice: Any, team: Any, tmp_path: Path) -> tuple[Any, Any]:
    """A passing portrait and a 1 s clip (billed as the 3 s minimum; short, since
    the emulator renders a real MP4 as long as the audio)."""
    wav = media_factories.make_wav(tmp_path / "voice.wav", 1.0)
    return inputs_for(alice, team, wav)


def queue(
    alice: Any, team: Any, inputs: tuple[Any, Any], *, resolution: str = "480P"
) -> GenerationJob:
    portrait, audio = inputs
    job = services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution=resolution
    )
    assert job.provider == PROVIDER
    return job


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
        time.sleep(0.02)
    raise AssertionError(f"job still {job.status} after {timeout} s")


def generation_lines(job: GenerationJob) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.GENERATION))


def sent_a_while_ago(job: GenerationJob) -> None:
    """Date the job's send back far enough for the sweep to look, and recently
    enough that a prediction created just now could be its answer."""
    sent = timezone.now() - timedelta(seconds=150)
    GenerationJob.objects.filter(pk=job.pk).update(
        submit_started_at=sent, submit_posted_at=sent
    )


def wait_until(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- the happy path -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "audio_seconds", "billed"),
    [("480P", 3.2, Decimal(4)), ("720P", 1.0, Decimal(3))],
    ids=["480P-rounded-up", "720P-minimum-3s"],
)
def test_a_job_goes_upload_submit_poll_store_and_is_billed_by_its_input(
    ws_emu, alice, team, tmp_path, resolution, audio_seconds, billed
):
    wav = media_factories.make_wav(tmp_path / "voice.wav", audio_seconds)
    job = drive(queue(alice, team, inputs_for(alice, team, wav), resolution=resolution))

    assert job.status == GenerationJob.Status.SUCCEEDED, job.error_message
    [task] = predictions(ws_emu)  # exactly one prediction for the job
    assert job.remote_task_id == task["id"] and task["status"] == "completed"
    assert task["resolution"] == resolution.lower()
    # The inputs reached WaveSpeed through its media upload (§9.4).
    uploads = ws_emu.state()["uploads"]
    assert sorted(u["type"] for u in uploads) == ["audio", "image"]
    assert task["input"]["image"].startswith(ws_emu.url + "/media/uploads/")
    assert task["input"]["audio"].startswith(ws_emu.url + "/media/uploads/")
    # The result is copied into our storage: a real MP4 with a poster.
    assert job.video.name.endswith(".mp4") and job.poster.name.endswith(".jpg")
    with stored_path(job.video.name) as video:
        media = probe_video(video)
    assert media.duration == pytest.approx(audio_seconds, abs=0.2)
    assert (media.width, media.height) == (task["width"], task["height"])
    assert (job.width, job.height) == (task["width"], task["height"])
    assert job.poster.size > 0
    # §9.5: the input's seconds rounded up, at least 3 s, at the tier's price.
    amount = billed * PRICE[resolution]
    assert job.billed_seconds == billed
    assert (job.cost, job.currency) == (amount, "USD")
    [line] = generation_lines(job)
    assert line.billed and line.remote_id == task["id"]
    assert (line.seconds, line.unit_price, line.amount) == (
        billed,
        PRICE[resolution],
        amount,
    )
    assert line.provider == PROVIDER


def test_a_second_job_with_the_same_bytes_reuses_the_uploads(
    ws_emu, inputs, alice, team
):
    assert drive(queue(alice, team, inputs)).status == "succeeded"
    assert len(ws_emu.state()["uploads"]) == 2

    second = drive(queue(alice, team, inputs))

    assert second.status == "succeeded"
    assert len(ws_emu.state()["uploads"]) == 2  # nothing uploaded again
    assert RemoteUpload.objects.count() == 2
    first_task, second_task = predictions(ws_emu)
    assert first_task["input"]["image"] == second_task["input"]["image"]
    assert first_task["input"]["audio"] == second_task["input"]["audio"]


def test_a_finished_task_is_recorded_with_its_final_word_and_billed_seconds(
    ws_emu, inputs, alice, team
):
    """The reconciliation compares Task rows with the provider's bill: a
    WaveSpeed task that ended must not stay recorded as `created`."""
    job = drive(queue(alice, team, inputs))

    record = Task.objects.get(remote_id=job.remote_task_id)
    assert record.job_id == job.pk and record.provider == PROVIDER
    assert (record.remote_status, record.state, record.billed_seconds) == (
        "completed",
        Task.State.SUCCEEDED,
        Decimal(3),
    )


# -- faults ---------------------------------------------------------------------------


def test_a_throttled_submit_waits_as_told_and_succeeds_later(
    ws_emu, inputs, alice, team
):
    ws_emu.faults(kind="throttle", route="submit", retry_after=30, count=1)
    job = queue(alice, team, inputs)

    before = timezone.now()
    submit.dispatch_and_submit(provider_name=PROVIDER)

    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 0
    # Retry-After: 30 is honoured, not a backoff of a second or two.
    assert job.not_before >= before + timedelta(seconds=30)
    assert slots.dispatch(provider_name=PROVIDER) == []  # it really waits
    assert predictions(ws_emu) == []

    job = drive(job)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert len(predictions(ws_emu)) == 1
    assert len(generation_lines(job)) == 1


def test_a_throttled_poll_waits_as_told(ws_emu, inputs, alice, team):
    ws_emu.configure(hold=True)
    job = queue(alice, team, inputs)
    submit.dispatch_and_submit(provider_name=PROVIDER)
    # Longer than the client waits inline (5 s): the dispatcher's business.
    ws_emu.faults(kind="throttle", route="result", retry_after=60, count=1)

    before = timezone.now()
    poll.job_poll(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "submitted"
    assert job.task.next_poll_at >= before + timedelta(seconds=60)
    ws_emu.configure(hold=False)
    ws_emu.advance(job.remote_task_id, "completed")
    assert drive(job).status == "succeeded"


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "server_error", "route": "upload", "count": 1},
        {"kind": "server_error", "route": "result", "count": 3},
        {"kind": "drop", "route": "result", "count": 3},
        {"kind": "throttle", "route": "result", "count": 2},
    ],
    ids=["upload-500", "poll-500", "poll-drop", "poll-429"],
)
def test_server_errors_are_retried_without_a_second_task(
    ws_emu, inputs, alice, team, fault
):
    ws_emu.faults(fault)

    job = drive(queue(alice, team, inputs))

    assert job.status == "succeeded", job.error_message
    assert job.attempts == 1
    assert len(predictions(ws_emu)) == 1
    assert len(generation_lines(job)) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_a_submit_answered_with_a_server_error_is_checked_before_it_is_sent_again(
    ws_emu, inputs, alice, team, caplog, status
):
    """A 5xx to the submit may come after WaveSpeed made the task (a gateway
    timing out): the client reads it as unanswered, so the job keeps its slot
    and the sweep looks in the listing before sending again."""
    ws_emu.faults(kind="server_error", route="submit", status=status, count=1)
    job = queue(alice, team, inputs)

    submit.dispatch_and_submit(provider_name=PROVIDER)

    job.refresh_from_db()
    assert (job.status, job.remote_task_id) == ("submitted", "")
    assert job.recovery == GenerationJob.Recovery.CHECKING
    assert predictions(ws_emu) == []
    sent_a_while_ago(job)
    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())
    job.refresh_from_db()
    assert job.status == "queued" and "no match in the listing" in caplog.text

    job = drive(job)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert len(predictions(ws_emu)) == 1
    assert len(generation_lines(job)) == 1


def test_a_task_that_failed_for_a_passing_reason_is_retried_and_only_the_success_billed(
    ws_emu, inputs, alice, team
):
    ws_emu.faults(
        kind="fail_task", message="Internal server error, please try again", count=1
    )

    job = drive(queue(alice, team, inputs))

    failed, done = predictions(ws_emu)
    assert (failed["status"], done["status"]) == ("failed", "completed")
    assert (job.status, job.attempts) == ("succeeded", 2)
    # §9.5: failed tasks are refunded; one charge, for the task that made the video.
    [line] = generation_lines(job)
    assert line.billed and line.remote_id == done["id"]
    assert line.amount == Decimal(3) * PRICE["480P"]
    record = Task.objects.get(remote_id=failed["id"])
    assert (record.remote_status, record.state) == ("failed", Task.State.FAILED)


def test_a_task_that_failed_for_good_fails_the_job_in_plain_words_and_is_free(
    ws_emu, inputs, alice, team
):
    ws_emu.faults(kind="fail_task", count=1)  # "the model could not generate the video"

    job = drive(queue(alice, team, inputs))

    [failed] = predictions(ws_emu)
    assert failed["status"] == "failed"
    assert (job.status, job.error_code) == ("failed", "TaskFailed")
    assert job.error_message.startswith("WaveSpeed could not make this video (")
    assert "Check the portrait and the audio" in job.error_message
    [line] = generation_lines(job)
    assert not line.billed and line.amount == 0
    assert "TaskFailed" in line.reason
    assert job.cost in (None, Decimal(0))


@pytest.mark.parametrize(
    ("mode", "billed_setting"),
    [("failed", True), ("completed", False)],
    ids=["failed-refunded", "completed-setting-false"],
)
def test_a_flagged_result_that_is_not_billed_fails_the_job_free_in_plain_words(
    ws_emu, inputs, alice, alice_client, team, settings, mode, billed_setting
):
    """A failed task is refunded (§9.5); a completed flagged one is free only when
    S2V_WAVESPEED_NSFW_BILLED says so."""
    settings.S2V_WAVESPEED_NSFW_BILLED = billed_setting
    ws_emu.faults(kind="nsfw", mode=mode, count=1)

    job = drive(queue(alice, team, inputs))

    assert (job.status, job.error_code) == ("failed", "ContentRefused")
    assert "It was not charged" in job.error_message
    assert "Use another portrait or audio clip" in job.error_message
    assert len(predictions(ws_emu)) == 1  # not retried: the same input fails again
    [line] = generation_lines(job)
    assert not line.billed and line.amount == 0
    page = alice_client.get(reverse("studio:job-detail", args=[job.code]))
    assert "It was not charged" in page.content.decode()
    assert 'id="paid-for-nothing"' not in page.content.decode()


def test_a_flagged_result_that_is_billed_fails_the_job_charged_in_plain_words(
    ws_emu, inputs, alice, alice_client, team
):
    """S2V_WAVESPEED_NSFW_BILLED (default true): whether WaveSpeed bills a completed
    flagged task is undocumented, so the budget counts it."""
    ws_emu.faults(kind="nsfw", mode="completed", count=1)

    job = drive(queue(alice, team, inputs))

    [task] = predictions(ws_emu)
    assert task["status"] == "completed" and len(predictions(ws_emu)) == 1
    assert (job.status, job.error_code) == ("failed", "ContentFlagged")
    assert "flagged this video as unsafe (NSFW) and withheld it" in job.error_message
    assert "could not be saved" not in job.error_message  # withheld, not lost
    assert "It was charged" in job.error_message
    assert "Use another portrait or audio clip" in job.error_message
    [line] = generation_lines(job)
    assert line.billed and line.remote_id == task["id"]
    assert line.amount == Decimal(3) * PRICE["480P"]  # 1 s clip: the 3 s minimum
    assert job.cost == line.amount
    page = alice_client.get(reverse("studio:job-detail", args=[job.code]))
    html = page.content.decode()
    assert "flagged this video as unsafe" in html and "It was charged" in html
    assert 'id="paid-for-nothing"' in html and task["id"] in html
    assert Task.objects.get(remote_id=task["id"]).billed_seconds == Decimal(3)


@pytest.mark.parametrize(
    "fault",
    [
        {
            "kind": "server_error",
            "route": "submit",
            "status": 401,
            "message": "Unauthorized: invalid API key",
        },
        {
            "kind": "server_error",
            "route": "submit",
            "status": 402,
            "message": "Insufficient balance, please top up",
        },
    ],
    ids=["401", "402"],
)
def test_an_account_error_pauses_the_account_with_a_plain_message(
    ws_emu, inputs, alice, alice_client, team, fault
):
    ws_emu.faults(fault)
    job = queue(alice, team, inputs)

    submit.dispatch_and_submit(provider_name=PROVIDER)

    account = ProviderAccount.objects.get(provider=PROVIDER)
    assert account.is_paused
    assert f"HTTP {fault['status']}" in account.paused_message
    assert fault["message"] in account.paused_message
    assert "paused until an admin fixes the API key" in account.paused_message
    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 0  # not the job's fault
    assert slots.dispatch(provider_name=PROVIDER) == []  # paused
    assert predictions(ws_emu) == []
    page = alice_client.get(reverse("studio:gallery")).content.decode()
    assert "Generation is paused" in page and "ws-emulator" not in page
    # Fixed: the next send works and resumes the account.
    assert drive(job).status == "succeeded"
    assert not ProviderAccount.objects.get(provider=PROVIDER).is_paused


def test_a_result_that_expired_before_the_copy_fails_with_a_clear_message(
    ws_emu, inputs, alice, team
):
    ws_emu.faults(kind="expire_results")

    job = drive(queue(alice, team, inputs))

    assert (job.status, job.error_code) == ("failed", "ResultExpired")
    assert "result link expired before the video was saved" in job.error_message
    assert "could not be saved" in job.error_message
    [task] = predictions(ws_emu)
    assert task["status"] == "completed" and len(predictions(ws_emu)) == 1


def test_a_completed_task_whose_result_expired_is_still_charged(
    ws_emu, inputs, alice, team
):
    ws_emu.faults(kind="expire_results")

    job = drive(queue(alice, team, inputs))

    [task] = predictions(ws_emu)
    [line] = generation_lines(job)
    # WaveSpeed billed the completed task: the ledger must say so to match the bill.
    assert line.billed and line.remote_id == task["id"]
    assert line.amount == Decimal(3) * PRICE["480P"]


# -- lost submits ------------------------------------------------------------------


def test_a_submit_whose_answer_was_lost_is_adopted_through_the_listing(
    ws_emu, inputs, alice, team, caplog
):
    # WaveSpeed makes the prediction, then the connection drops.
    ws_emu.faults(kind="drop", route="submit", when="after", count=1)
    job = queue(alice, team, inputs)

    submit.dispatch_and_submit(provider_name=PROVIDER)

    job.refresh_from_db()
    assert (job.status, job.remote_task_id) == ("submitted", "")
    assert job.recovery == GenerationJob.Recovery.CHECKING
    [task] = predictions(ws_emu)
    # The job keeps its slot, and is never posted again by a new dispatch.
    assert submit.job_submit(job_id=job.pk) is not None
    assert len(predictions(ws_emu)) == 1
    sent_a_while_ago(job)
    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert job.remote_task_id == task["id"]
    assert f"job {job.pk}: adopted task {task['id']}" in caplog.text
    job = drive(job)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert [p["id"] for p in predictions(ws_emu)] == [task["id"]]  # one task
    [line] = generation_lines(job)  # one charge
    assert line.billed and line.remote_id == task["id"]
    assert line.amount == Decimal(3) * PRICE["480P"]


def test_a_lost_submit_whose_listed_task_failed_is_sent_again_not_adopted(
    ws_emu, inputs, alice, team, caplog
):
    """A failed prediction is refunded (§9.5) and may be another attempt's:
    adopting it would fail the job for nothing."""
    ws_emu.faults(
        {"kind": "fail_task", "count": 1},
        {"kind": "drop", "route": "submit", "when": "after", "count": 1},
    )
    job = queue(alice, team, inputs)
    submit.dispatch_and_submit(provider_name=PROVIDER)
    [failed] = wait_until(
        "the prediction to fail",
        lambda: [p for p in predictions(ws_emu) if p["status"] == "failed"],
    )
    sent_a_while_ago(job)

    with caplog.at_level("INFO", logger="studio.queue"):
        recovery.sweep_remote(now=timezone.now())

    job.refresh_from_db()
    assert job.status == "queued" and job.remote_task_id == ""
    assert "adopted task" not in caplog.text
    job = drive(job)
    assert job.status == "succeeded"
    first, second = predictions(ws_emu)
    assert first["id"] == failed["id"] and second["status"] == "completed"
    [line] = generation_lines(job)
    assert line.billed and line.remote_id == second["id"]


# -- webhooks ---------------------------------------------------------------------


@pytest.fixture
def hooked(ws_emu, settings, live_server, monkeypatch):
    """A public base URL (the live test server) and the webhook's polls captured."""
    settings.S2V_PUBLIC_BASE_URL = live_server.url
    polls: list[int] = []
    lock = threading.Lock()

    def capture(func: str, job_id: int, **kw: Any) -> None:
        assert func == "studio.tasks.job_poll"
        with lock:
            polls.append(job_id)

    monkeypatch.setattr("studio.providers.wavespeed.views.async_task", capture)
    return polls


def hook_url(live_server: Any) -> str:
    return live_server.url + "/hooks/wavespeed/"


def test_submit_registers_the_webhook_and_the_signed_callback_asks_for_a_poll(
    ws_emu, hooked, live_server, inputs, alice, team
):
    ws_emu.configure(hold=True)  # the callback comes after the id is saved
    job = queue(alice, team, inputs)
    submit.dispatch_and_submit(provider_name=PROVIDER)
    job.refresh_from_db()
    [task] = predictions(ws_emu)
    assert task["id"] == job.remote_task_id
    assert task["webhook"] == hook_url(live_server)  # §9.6 `?webhook=`

    ws_emu.advance(job.remote_task_id, "completed")
    [delivery] = wait_until(
        "the callback",
        lambda: [d for d in ws_emu.deliveries() if d["state"] != "pending"],
    )

    assert delivery["state"] == "delivered"
    assert delivery["attempts"][-1]["http_status"] == 200
    assert hooked == [job.pk]  # the poll was handed to a worker at once
    job.refresh_from_db()
    assert job.task.next_poll_at > timezone.now()  # leased, as the tick does
    # The callback is only a hint: the poll reads the result.
    job = poll.job_poll(job_id=job.pk)
    assert job is not None and job.status == "succeeded"


def test_a_callback_with_a_bad_signature_is_refused_and_changes_nothing(
    ws_emu, hooked, live_server, inputs, alice, team
):
    ws_emu.configure(hold=True)
    ws_emu.faults(kind="webhook_bad_signature", count=1)
    job = queue(alice, team, inputs)
    submit.dispatch_and_submit(provider_name=PROVIDER)
    job.refresh_from_db()
    planned = job.task.next_poll_at

    ws_emu.advance(job.remote_task_id, "completed")
    [delivery] = wait_until(
        "the callback to be given up",
        lambda: [d for d in ws_emu.deliveries() if d["state"] == "failed"],
    )

    assert delivery["bad_signature"]
    assert {a["http_status"] for a in delivery["attempts"]} == {401}
    assert hooked == []
    job.refresh_from_db()
    assert (job.status, job.task.next_poll_at) == ("submitted", planned)


def crafted(ws: Any, job: GenerationJob, *, age: int) -> tuple[bytes, dict[str, str]]:
    """A callback for the job's task signed with the account's secret, `age` s old."""
    body = json.dumps(
        {"id": job.remote_task_id, "status": "completed", "outputs": []}
    ).encode()
    webhook_id = "msg_" + uuid.uuid4().hex
    stamp = int(time.time()) - age
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": "v3," + sign(ws.webhook_secret(), webhook_id, stamp, body),
    }
    return body, headers


def test_an_old_timestamp_is_refused_and_a_fresh_one_accepted(
    ws_emu, hooked, live_server, inputs, alice, team
):
    ws_emu.configure(hold=True)
    job = queue(alice, team, inputs)
    submit.dispatch_and_submit(provider_name=PROVIDER)
    job.refresh_from_db()
    planned = job.task.next_poll_at

    body, headers = crafted(ws_emu, job, age=400)  # §9.6: older than 300 s
    old = httpx.post(hook_url(live_server), content=body, headers=headers)
    tampered = httpx.post(
        hook_url(live_server),
        content=body.replace(b"completed", b"failed"),
        headers=crafted(ws_emu, job, age=0)[1],
    )

    assert (old.status_code, tampered.status_code) == (401, 401)
    assert hooked == []
    job.refresh_from_db()
    assert (job.status, job.task.next_poll_at) == ("submitted", planned)

    body, headers = crafted(ws_emu, job, age=0)
    fresh = httpx.post(hook_url(live_server), content=body, headers=headers)
    assert fresh.status_code == 200 and hooked == [job.pk]


# -- concurrency ---------------------------------------------------------------------


def test_the_slot_is_free_while_a_finished_task_s_result_is_copied(
    ws_emu, inputs, alice, team, settings, monkeypatch
):
    """The next job goes out the moment a task ends, before the copy (as for
    DashScope), although WaveSpeed's word for it is `completed`."""
    settings.S2V_WAVESPEED_CONCURRENCY = 1
    first, second = queue(alice, team, inputs), queue(alice, team, inputs)
    provider = get_provider(PROVIDER)
    real_fetch = provider.fetch
    seen: list[tuple[str, str]] = []

    def fetch(result: Any, dest: Any) -> None:
        waiting = GenerationJob.objects.get(pk=second.pk)
        seen.append((result.task_id, waiting.status))
        real_fetch(result, dest)

    monkeypatch.setattr(provider, "fetch", fetch)

    first = drive(first)

    assert first.status == "succeeded"
    assert seen[0] == (first.remote_task_id, "submitted")
    assert drive(second).status == "succeeded"


def most_at_once(tasks: list[dict[str, Any]]) -> int:
    """The most predictions between `created` and `finished` at one moment."""
    events = sorted(
        [(t["created"], 1) for t in tasks] + [(t["finished"], -1) for t in tasks],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same moment
    )
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_five_jobs_never_have_more_than_three_tasks_at_bronze(
    ws_emu, inputs, alice, team, settings
):
    # Bronze: 3 concurrent (§9.6); tasks of ~0.3 s so that they overlap.
    settings.S2V_WAVESPEED_CONCURRENCY = 3
    ws_emu.configure(created_seconds=50, processing_seconds=300)
    jobs = [queue(alice, team, inputs) for _ in range(5)]
    seen: list[int] = []

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = set(GenerationJob.objects.values_list("status", flat=True))
        if states <= {"succeeded", "failed"}:
            break
        GenerationJob.objects.update(not_before=None)
        submit.dispatch_and_submit(provider_name=PROVIDER)
        seen.append(ws_emu.state()["keys"]["ws-emulator"]["active"])
        for job in GenerationJob.objects.filter(
            status__in=GenerationJob.IN_FLIGHT
        ).exclude(remote_task_id=""):
            poll.job_poll(job_id=job.pk)
        time.sleep(0.02)

    for job in jobs:
        job.refresh_from_db()
        assert job.status == "succeeded", job.error_message
    tasks = predictions(ws_emu)
    assert len(tasks) == 5  # one task per job
    assert sorted(t["id"] for t in tasks) == sorted(j.remote_task_id for j in jobs)
    assert max(seen) == 3 and most_at_once(tasks) == 3  # used, never exceeded
    assert ws_emu.state()["totals"].get("throttled_concurrency", 0) == 0


# -- runstudio ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("providers", "started"),
    [
        (["local"], []),
        (["emulator"], ["dashscope_emulator"]),
        (["wavespeed-emulator"], ["wavespeed_emulator"]),
        (["dashscope", "emulator"], ["dashscope_emulator"]),
        (
            ["wavespeed-emulator", "emulator"],
            ["dashscope_emulator", "wavespeed_emulator"],
        ),
    ],
)
def test_runstudio_starts_the_emulators_of_the_enabled_providers(
    settings, providers, started
):
    from studio.management.commands.runstudio import emulator_commands

    settings.S2V_PROVIDERS = providers
    settings.S2V_PROVIDER = providers[0]
    settings.S2V_EMULATOR_PORT = 8765
    settings.S2V_WAVESPEED_EMULATOR_PORT = 8799

    commands = emulator_commands(["python", "manage.py"])

    assert [c[2] for c in commands] == started
    for command in commands:
        port = "8799" if command[2] == "wavespeed_emulator" else "8765"
        assert command[command.index("--port") + 1] == port


@pytest.mark.cluster
def test_runstudio_serves_both_emulators_when_both_are_enabled(tmp_path):
    from tests.live import LiveStudio, free_port

    ds_port, ws_port = free_port(), free_port()
    studio = LiveStudio(
        tmp_path / "studio",
        name="runstudio",
        env={
            "S2V_PROVIDERS": "wavespeed-emulator,emulator",
            "S2V_EMULATOR_PORT": str(ds_port),
            "S2V_WAVESPEED_EMULATOR_PORT": str(ws_port),
        },
    )
    try:
        studio.start_runstudio()

        def both_answer() -> bool:
            try:
                ws = httpx.get(f"http://127.0.0.1:{ws_port}/_emulator/state", timeout=2)
                ds = httpx.get(f"http://127.0.0.1:{ds_port}/", timeout=2)
            except httpx.TransportError:
                return False
            return ws.status_code == 200 and ds.status_code < 500

        studio.wait_for(both_answer, timeout=30, interval=0.2, what="both emulators")
    finally:
        studio.stop()
