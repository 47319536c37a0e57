"""A worker dying anywhere in a submit costs one task per job and frees the slot.

Against the emulator over HTTP. A crash is simulated by raising WorkerKilled (a
BaseException, which nothing in the studio catches) at that moment; time after
the crash is simulated by handing the sweep a later `now`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.db.models import F, Sum
from django.urls import reverse
from django.utils import timezone

from studio import billing, services
from studio.models import (
    GenerationJob,
    LedgerEntry,
    Price,
    ProviderAccount,
    Task,
)
from studio.providers import get_provider
from studio.providers.base import ListedTask, TaskState
from studio.providers.dashscope.client import DashScopeClient
from studio.providers.dashscope.provider import DashScopeProvider
from studio.queue import accounts, poll, recovery, slots, submit
from tests import media_factories
from tests.conftest import ASTRONAUT, upload

pytestmark = pytest.mark.django_db

# Every job must be settled (adopted, queued again or marked) this long after a crash.
SETTLED_WITHIN = timedelta(minutes=10)


def sent_and_died(job: GenerationJob) -> None:
    """The worker sent the job's paid request, then died before any answer."""
    GenerationJob.objects.filter(pk=job.pk).update(
        submit_posted_at=F("submit_started_at")
    )


class WorkerKilled(BaseException):
    """kill -9 at this line: nothing after it runs, nothing catches it."""


@pytest.fixture
def inputs(emu, alice, team, tmp_path):
    portrait = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    wav = media_factories.make_wav(tmp_path / "voice.wav", 2.0)
    audio = services.audio_submit(team=team, user=alice, upload=upload(wav))
    assert portrait.portrait is not None and audio.clip is not None
    return portrait.portrait, audio.clip


def new_job(alice, team, inputs) -> GenerationJob:
    portrait, audio = inputs
    return services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )


def tasks_of(emu) -> list[dict[str, Any]]:
    return emu.account_state()["tasks"]


def provider_bill(emu) -> Decimal:
    """What the emulator's account was billed: billed seconds × price, per task."""
    total = Decimal(0)
    for task in tasks_of(emu):
        if task["status"] == "SUCCEEDED":
            seconds = Decimal(f"{task['video_duration']:.2f}")
            total += billing.amount_for(
                seconds,
                billing.unit_price(
                    provider="dashscope",
                    unit=Price.Unit.SECOND,
                    resolution=task["resolution"],
                ),
            )
    return total


def ledger_total() -> Decimal:
    return LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GENERATION).aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)


def settle(
    jobs: Iterable[GenerationJob], *, crashed_at: datetime, within=SETTLED_WITHIN
) -> timedelta:
    """Run the minute sweep, the dispatcher and the polls, one simulated minute at a
    time, until every job is terminal. Returns the simulated time it took."""
    ids = [job.pk for job in jobs]
    minute = timedelta(0)
    while minute <= within:
        recovery.sweep_remote(now=crashed_at + minute)
        for _ in range(60):  # real seconds for the emulator to run tasks
            open_jobs = GenerationJob.objects.filter(pk__in=ids).exclude(
                status__in=GenerationJob.TERMINAL
            )
            if not open_jobs.exists():
                return minute
            if not open_jobs.exclude(status=GenerationJob.Status.QUEUED).filter(
                remote_task_id=""
            ):
                GenerationJob.objects.filter(pk__in=ids).update(not_before=None)
                ProviderAccount.objects.update(retry_at=None)
                submit.dispatch_and_submit(provider_name="dashscope")
            for job in open_jobs.exclude(remote_task_id=""):
                poll.job_poll(job_id=job.pk)
            if not open_jobs.exclude(remote_task_id="").exists():
                break  # only lost submits left: the next sweep settles them
            time.sleep(0.1)
        minute += timedelta(minutes=1)
    left = list(
        GenerationJob.objects.filter(pk__in=ids)
        .exclude(status__in=GenerationJob.TERMINAL)
        .values_list("pk", "status", "recovery")
    )
    raise AssertionError(f"jobs still open {within} after the crash: {left}")


def kill_at(monkeypatch, owner: type, name: str, *, after: bool) -> list[int]:
    """The next call of owner.name dies before (or right after) it does its work."""
    original = getattr(owner, name)
    fired: list[int] = []

    def dying(self, *args, **kwargs):
        if fired:
            return original(self, *args, **kwargs)
        fired.append(1)
        if after:
            original(self, *args, **kwargs)
        raise WorkerKilled(f"{owner.__name__}.{name}")

    monkeypatch.setattr(owner, name, dying)
    return fired


def kill_after_saving_the_id(monkeypatch) -> list[int]:
    # job_submit saves the id in one UPDATE, then resumes the account: die there.
    fired: list[int] = []
    original = accounts.clear_pause

    def dying(provider_name: str) -> int:
        if fired:
            return original(provider_name)
        fired.append(1)
        raise WorkerKilled("after the id was saved")

    monkeypatch.setattr(accounts, "clear_pause", dying)
    return fired


CRASHES: dict[str, Callable[[Any], list[int]]] = {
    "before-sending": lambda mp: kill_at(mp, DashScopeClient, "submit", after=False),
    "after-accepted": lambda mp: kill_at(mp, DashScopeClient, "submit", after=True),
    "after-id-saved": kill_after_saving_the_id,
    "while-running": lambda mp: kill_at(mp, DashScopeProvider, "poll", after=True),
    "while-copying": lambda mp: kill_at(mp, DashScopeProvider, "fetch", after=False),
}


@pytest.mark.parametrize("moment", list(CRASHES))
def test_a_crash_at_each_moment_of_a_submit_costs_one_task_and_settles_in_time(
    emu, inputs, alice, team, monkeypatch, moment, caplog
):
    jobs = [new_job(alice, team, inputs) for _ in range(2)]
    fired = CRASHES[moment](monkeypatch)

    with caplog.at_level(logging.INFO, logger="studio.queue"):
        try:
            submit.dispatch_and_submit(provider_name="dashscope")
            for _ in range(100):  # polls until the crash point is reached
                for job in GenerationJob.objects.exclude(remote_task_id=""):
                    poll.job_poll(job_id=job.pk)
                time.sleep(0.05)
        except WorkerKilled:
            pass
        assert fired, "the crash point was never reached"
        crashed_at = timezone.now()
        took = settle(jobs, crashed_at=crashed_at)

    assert took <= SETTLED_WITHIN
    done = GenerationJob.objects.filter(pk__in=[j.pk for j in jobs])
    assert sorted(done.values_list("status", flat=True)) == ["succeeded"] * 2
    tasks = tasks_of(emu)
    assert len(tasks) == 2  # one task per job, none sent twice
    assert sorted(done.values_list("remote_task_id", flat=True)) == sorted(
        t["id"] for t in tasks
    )
    assert ledger_total() == provider_bill(emu) > 0
    if moment == "before-sending":
        assert "no match in the listing" in caplog.text
    if moment == "after-accepted":
        assert "adopted task" in caplog.text


def test_a_submit_answer_slower_than_the_timeout_makes_one_task(
    emu, inputs, alice, team, monkeypatch, client
):
    provider = get_provider("dashscope")
    monkeypatch.setattr(provider.client._client, "timeout", httpx.Timeout(0.5))
    # The emulator sleeps, then makes the task: after the client gave up.
    emu.faults(kind="slow", route="submit", delay_ms=1500, count=1)
    job = new_job(alice, team, inputs)

    submit.dispatch_and_submit(provider_name="dashscope")

    job.refresh_from_db()
    assert (job.status, job.remote_task_id, job.recovery) == (
        "submitted",
        "",
        "checking",
    )
    assert slots.dispatch(provider_name="dashscope") == []  # keeps its slot
    client.force_login(alice)
    page = client.get(reverse("studio:job-status", args=[job.code]))
    assert b"Checking with the provider whether it received this job" in page.content
    # Its task may be running, with no id to withdraw it by: no cancel.
    cancel_url = reverse("studio:job-cancel", args=[job.code]).encode()
    assert cancel_url not in page.content and not job.can_cancel
    with pytest.raises(
        services.Rejected, match=r"checking whether\s+the provider received it"
    ):
        services.job_cancel(job=job)
    time.sleep(1.5)
    assert len(tasks_of(emu)) == 1

    settle([job], crashed_at=timezone.now() + timedelta(minutes=2))

    job.refresh_from_db()
    assert job.status == "succeeded" and job.recovery == ""
    assert [t["id"] for t in tasks_of(emu)] == [job.remote_task_id]


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "server_error", "route": "list", "status": 404, "code": "NotFound"},
        {"kind": "drop", "route": "list"},
    ],
    ids=["listing-404", "listing-dropped"],
)
def test_a_listing_that_keeps_failing_marks_the_job_and_frees_the_slot_after_grace(
    emu, inputs, alice, team, settings, client, caplog, fault
):
    settings.S2V_LOST_SUBMIT_GRACE_MINUTES = 20
    emu.faults({**fault, "count": None})
    job = new_job(alice, team, inputs)
    waiting = new_job(alice, team, inputs)
    [claimed] = slots.dispatch(provider_name="dashscope")
    assert claimed == job.pk
    sent_and_died(job)
    crashed_at = timezone.now()

    with caplog.at_level(logging.INFO, logger="studio.queue"):
        for minutes in range(0, 11):
            recovery.sweep_remote(now=crashed_at + timedelta(minutes=minutes))
        job.refresh_from_db()
        # Marked within 10 minutes, still holding the slot: the provider cannot say
        # whether a task of this job is running.
        assert (job.status, job.recovery) == ("submitted", "admin")
        assert slots.dispatch(provider_name="dashscope") == []
        client.force_login(alice)
        page = client.get(job.get_absolute_url())
        assert b"the provider may have made this video" in page.content

        recovery.sweep_remote(now=job.recovery_at + timedelta(minutes=20))

    job.refresh_from_db()
    assert (job.status, job.recovery, job.error_code) == (
        "failed",
        "admin",
        "unverified_submit",
    )
    assert "marked for an admin" in caplog.text and "slot freed" in caplog.text
    spend = client.get(reverse("studio:spend"))  # alice is the team's admin
    assert b"may have made: check the bill" in spend.content
    assert job.display_title.encode() in spend.content
    waiting.refresh_from_db()
    assert waiting.status == "submitted"  # the freed slot went to the next job
    assert ledger_total() == 0  # nothing charged for what nobody knows was made


def test_a_marked_job_frees_the_slot_once_the_listing_shows_the_account_idle(
    emu, inputs, alice, team, settings, caplog
):
    settings.S2V_LOST_SUBMIT_GRACE_MINUTES = 600
    job = new_job(alice, team, inputs)
    slots.dispatch(provider_name="dashscope")
    waiting = new_job(alice, team, inputs)
    sent_and_died(job)
    crashed_at = timezone.now()
    listed: list[ListedTask] = []

    def listing(self, *, since):
        return listed

    provider = type(get_provider("dashscope"))
    stranger = ListedTask(
        task_id="not-ours",
        status="RUNNING",
        state=TaskState.RUNNING,
        model="wan2.2-s2v",
        submitted_at=crashed_at + timedelta(seconds=1),
    )
    # Two unknown tasks for one lost job: which one is its, if any?
    listed += [
        stranger,
        ListedTask(
            task_id="also-not-ours",
            status="SUCCEEDED",
            state=TaskState.SUCCEEDED,
            model="wan2.2-s2v",
            submitted_at=crashed_at + timedelta(seconds=2),
        ),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(provider, "listed_tasks", listing)
        with caplog.at_level(logging.INFO, logger="studio.queue"):
            recovery.sweep_remote(now=crashed_at + timedelta(minutes=7))
            job.refresh_from_db()
            assert (job.status, job.recovery) == ("submitted", "admin")
            assert "cannot tell which is this job's" in caplog.text
            assert slots.dispatch(provider_name="dashscope") == []  # still held
            listed[0] = ListedTask(
                task_id="not-ours",
                status="SUCCEEDED",
                state=TaskState.SUCCEEDED,
                model="wan2.2-s2v",
                submitted_at=stranger.submitted_at,
            )
            recovery.sweep_remote(now=crashed_at + timedelta(minutes=8))

    job.refresh_from_db()
    assert (job.status, job.recovery) == ("failed", "admin")
    assert "nothing pending or running" in caplog.text
    waiting.refresh_from_db()
    assert waiting.status == "submitted"  # the freed slot went to the next job


def test_two_lost_jobs_adopt_their_tasks_in_creation_order(
    emu, inputs, alice, team, settings
):
    settings.S2V_DASHSCOPE_CONCURRENCY = 2
    emu.configure(concurrency=2)
    # A known task (saved on another job) is never adopted.
    other = new_job(alice, team, inputs)
    settle([other], crashed_at=timezone.now())
    jobs = [new_job(alice, team, inputs) for _ in range(2)]
    submit.dispatch_and_submit(provider_name="dashscope")
    for job in jobs:
        job.refresh_from_db()
    ids = {job.pk: job.remote_task_id for job in jobs}
    assert all(ids.values())
    # Both workers died before saving: the ids are lost together (and so the
    # record of every task the studio had never got them either).
    GenerationJob.objects.filter(pk__in=ids).update(remote_task_id="", remote_status="")
    Task.objects.filter(remote_id__in=ids.values()).delete()

    recovery.sweep_remote(now=timezone.now() + timedelta(minutes=3))

    for job in jobs:
        job.refresh_from_db()
        assert job.remote_task_id == ids[job.pk]
    settle(jobs, crashed_at=timezone.now())
    assert len(tasks_of(emu)) == 3
    assert ledger_total() == provider_bill(emu)


def test_matching_is_ambiguous_when_tasks_and_jobs_do_not_pair_up():
    now = timezone.now()
    a = GenerationJob(pk=1, submit_started_at=now)
    b = GenerationJob(pk=2, submit_started_at=now + timedelta(seconds=30))
    t1 = ListedTask(
        "t1", "RUNNING", TaskState.RUNNING, submitted_at=now + timedelta(seconds=1)
    )
    t2 = ListedTask(
        "t2", "PENDING", TaskState.PENDING, submitted_at=now + timedelta(seconds=31)
    )
    old = ListedTask(
        "t0", "RUNNING", TaskState.RUNNING, submitted_at=now - timedelta(minutes=5)
    )

    assert recovery.match_lost([b, a], [t2, t1]) == ([(a, t1), (b, t2)], [], [])
    # One task, created within the clocks' slack of b's start: either could own it.
    assert recovery.match_lost([a, b], [t1]) == ([], [], [a, b])
    assert recovery.match_lost([a, b], [old]) == ([], [a, b], [])
    late_a = GenerationJob(pk=3, submit_started_at=now + timedelta(minutes=5))
    assert recovery.match_lost([late_a], [t1]) == ([], [late_a], [])
    assert recovery.match_lost([a], [t1, t2]) == ([], [], [a])


def test_a_submit_redelivered_after_its_worker_died_is_not_sent_again(
    emu, inputs, alice, team, monkeypatch, caplog
):
    job = new_job(alice, team, inputs)
    kill_at(monkeypatch, DashScopeClient, "submit", after=True)
    [claimed] = slots.dispatch(provider_name="dashscope")
    with pytest.raises(WorkerKilled):
        submit.job_submit(job_id=claimed)
    assert len(tasks_of(emu)) == 1

    # The broker hands the message to another worker.
    with caplog.at_level(logging.INFO, logger="studio.queue"):
        submit.job_submit(job_id=claimed)

    assert len(tasks_of(emu)) == 1  # not sent twice
    assert "submit already begun" in caplog.text
    settle([job], crashed_at=timezone.now())
    job.refresh_from_db()
    assert job.status == "succeeded" and job.remote_task_id == tasks_of(emu)[0]["id"]


def test_a_job_whose_send_began_cannot_be_canceled_but_one_only_claimed_can(
    emu, inputs, alice, team, monkeypatch
):
    first = new_job(alice, team, inputs)
    kill_at(monkeypatch, DashScopeClient, "submit", after=True)
    [claimed] = slots.dispatch(provider_name="dashscope")
    with pytest.raises(WorkerKilled):  # the task exists; its id died with the worker
        submit.job_submit(job_id=claimed)
    first.refresh_from_db()
    with pytest.raises(services.Rejected):
        services.job_cancel(job=first)
    settle([first], crashed_at=timezone.now())
    first.refresh_from_db()
    assert first.status == "succeeded" and len(tasks_of(emu)) == 1

    second = new_job(alice, team, inputs)
    slots.dispatch(provider_name="dashscope")  # claimed, not yet sent
    second.refresh_from_db()
    assert services.job_cancel(job=second).status == "canceled"
    assert submit.job_submit(job_id=second.pk).status == "canceled"
    assert len(tasks_of(emu)) == 1


def test_a_job_taken_back_while_its_inputs_upload_sends_nothing(
    emu, inputs, alice, team, monkeypatch, caplog
):
    # A slow upload outlives the sweep's patience: the sweep takes the job back,
    # and the worker, still holding it, must not then send the paid request.
    job = new_job(alice, team, inputs)
    real_input_url = DashScopeProvider.input_url
    swept: list[int] = []

    def slow_upload(self, image, *, model):
        url = real_input_url(self, image, model=model)
        if not swept:
            later = timezone.now() + recovery.UNSENT_SUBMIT_AFTER + timedelta(minutes=1)
            swept.extend(recovery.sweep_remote(now=later))
        return url

    monkeypatch.setattr(DashScopeProvider, "input_url", slow_upload)
    with caplog.at_level(logging.INFO, logger="studio.queue"):
        submit.dispatch_and_submit(provider_name="dashscope")

    assert swept == [job.pk]
    job.refresh_from_db()
    assert job.status == "queued" and job.submit_posted_at is None
    assert tasks_of(emu) == []  # nothing was sent, nothing can be billed
    assert "taken back while it was being sent; not sent" in caplog.text
    monkeypatch.setattr(DashScopeProvider, "input_url", real_input_url)
    settle([job], crashed_at=timezone.now())
    assert len(tasks_of(emu)) == 1 and ledger_total() == provider_bill(emu)


def test_a_task_created_long_after_the_send_is_not_taken_for_its_answer():
    # The account is shared: another application's task made minutes after this
    # job's request went out cannot be that request's answer.
    sent = timezone.now() - timedelta(minutes=10)
    job = GenerationJob(pk=1, submit_started_at=sent, submit_posted_at=sent)

    def task(minutes_after: float) -> ListedTask:
        return ListedTask(
            task_id=f"t{minutes_after}",
            status="SUCCEEDED",
            state=TaskState.SUCCEEDED,
            model="wan2.2-s2v",
            submitted_at=sent + timedelta(minutes=minutes_after),
        )

    assert recovery.match_lost([job], [task(7)]) == ([], [job], [])
    assert recovery.match_lost([job], [task(0.01)]) == ([(job, task(0.01))], [], [])


def test_an_unexpected_error_before_sending_fails_the_job_and_frees_the_slot(
    emu, inputs, alice, team, monkeypatch
):
    job = new_job(alice, team, inputs)
    waiting = new_job(alice, team, inputs)

    def broken(self, image, *, model):
        raise FileNotFoundError("the stored portrait is gone")

    monkeypatch.setattr(DashScopeProvider, "input_url", broken)
    submit.dispatch_and_submit(provider_name="dashscope")

    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "submit_error")
    assert "Nothing was billed" in job.error_message
    assert tasks_of(emu) == []
    # The slot is free for the next job at once, not after a sweep.
    assert slots.dispatch(provider_name="dashscope") == [waiting.pk]


def test_an_answer_that_comes_after_the_sweep_moved_the_job_on_cancels_nothing(
    emu, inputs, alice, team, monkeypatch, caplog
):
    # The submit hangs long enough for the sweep to find no task in the listing
    # and queue the job again; then the provider answers. That task may be the
    # one the job ends up with (or billed anyway): it is kept on record, never
    # canceled, and it holds no slot the queue counts.
    job = new_job(alice, team, inputs)
    real_submit = DashScopeClient.submit
    swept: list[int] = []

    def late_answer(self, **kwargs):
        if not swept:
            later = timezone.now() + recovery.LOST_SUBMIT_AFTER * 3
            swept.extend(recovery.sweep_remote(now=later))
        return real_submit(self, **kwargs)

    monkeypatch.setattr(DashScopeClient, "submit", late_answer)
    with caplog.at_level(logging.INFO, logger="studio.queue"):
        submit.dispatch_and_submit(provider_name="dashscope")

    assert swept == [job.pk]
    [late] = tasks_of(emu)
    job.refresh_from_db()
    assert (job.status, job.remote_task_id) == ("queued", "")
    assert "answered after the job moved on" in caplog.text
    record = Task.objects.get(remote_id=late["id"])
    assert record.job_id == job.pk and record.state == "pending"
    assert Task.objects.filter(slots.holding_slot("dashscope")).count() == 0

    monkeypatch.setattr(DashScopeClient, "submit", real_submit)
    settle([job], crashed_at=timezone.now())
    job.refresh_from_db()
    assert job.status == "succeeded"
    statuses = {t["id"]: t["status"] for t in tasks_of(emu)}
    assert statuses[late["id"]] != "CANCELED"  # never withdrawn by the studio
    # Two tasks on record for the job, each attempt its own; the ledger line
    # names the one the job was made from.
    assert job.tasks.count() == 2 and job.task is not None
    assert job.task.remote_id == job.remote_task_id
    line = LedgerEntry.objects.get(job=job, kind=LedgerEntry.Kind.GENERATION)
    assert line.task_id == job.task_id
